"""The front-door bench's arithmetic (:mod:`bench.front_door`) on records made up here: no process, no clock."""

from __future__ import annotations

from typing import Any

import pytest

from bench.front_door import users_throughput


def _record(user: int, sent: float, done: float | None) -> dict[str, Any]:
    return {"user": user, "n": 0, "new": False, "sent": sent, "acked": sent, "visible": done, "done": done,
            "first_output": done}


TIMEOUT = 60.0


def test_users_throughput_counts_each_user_from_their_own_first_message() -> None:
    # Two users, two answers each, 1.1 s apart; the second starts half a second after the first.
    recs = [_record(0, 0.0, 1.1), _record(0, 1.1, 2.2), _record(1, 0.5, 1.6), _record(1, 1.6, 2.7)]
    assert users_throughput(recs, TIMEOUT) == pytest.approx(2 / 2.2 + 2 / 2.2)
    wall = max(r["done"] for r in recs) - min(r["sent"] for r in recs)
    assert users_throughput(recs, TIMEOUT) > len(recs) / wall  # the late start is not counted against anyone


def test_a_message_never_answered_costs_its_user_the_whole_wait() -> None:
    # First, last, or only message unanswered: the user's span runs to that message's sent time + the timeout.
    last = [_record(0, 0.0, 1.0), _record(0, 1.0, None)]
    assert users_throughput(last, TIMEOUT) == pytest.approx(1 / (1.0 + TIMEOUT))
    first = [_record(1, 0.0, None), _record(1, TIMEOUT, TIMEOUT + 1.0)]
    assert users_throughput(first, TIMEOUT) == pytest.approx(1 / (TIMEOUT + 1.0))
    assert users_throughput([_record(2, 0.0, None)], TIMEOUT) == 0.0
