"""Fuzzing the whole text path of both platforms: what users send in, what the bot sends out.

In: a Slack mention envelope goes through the adapter's parser and the core's input cleaning.
Out: an answer goes through the platform's rendering and splitting. Neither side may crash,
exceed a platform limit, or lose or reorder characters outside formatting.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.discord.reply import DISCORD_TEXT_LIMIT
from adapters.kit.text import split_text
from adapters.slack.mrkdwn import SLACK_TEXT_LIMIT, markdown_to_mrkdwn
from adapters.slack.parse import parse_event
from bot.text import clean_input

BOT = "UBOT"
FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*$", re.MULTILINE)

user_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=600)
answer_text = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300),
        st.builds(
            lambda lang, code: f"```{lang}\n{code}\n```", st.sampled_from(["", "python", "sh"]), st.text(max_size=900)
        ),
        st.just("# Heading\n- item **bold** _it_ [link](https://example.com/a_b)\n"),
    ),
    max_size=25,
).map("\n".join)


def _visible(text: str) -> str:
    """Characters that carry meaning: no whitespace, no fence lines added or moved by splitting."""
    return re.sub(r"\s+", "", FENCE_LINE.sub("", text))


@settings(max_examples=200, deadline=None)
@given(before=user_text, after=user_text)
def test_slack_input_path(before: str, after: str) -> None:
    body = {
        "team_id": "T1",
        "event_id": "Ev1",
        "event": {
            "type": "app_mention",
            "user": "U1",
            "channel": "C1",
            "ts": "1.1",
            "text": f"{before}<@{BOT}>{after}",
        },
    }
    parsed = parse_event(body, BOT, "user")
    assert parsed is not None
    cleaned = clean_input(parsed.incoming.text)
    assert f"<@{BOT}>" not in cleaned
    expected = re.sub(r"\s+", "", clean_input(before) + clean_input(after))
    assert re.sub(r"\s+", "", cleaned) == expected.replace(f"<@{BOT}>", "")


@settings(max_examples=150, deadline=None)
@given(answer=answer_text)
def test_slack_output_path(answer: str) -> None:
    chunks = split_text(markdown_to_mrkdwn(answer), SLACK_TEXT_LIMIT)
    assert all(len(chunk) <= SLACK_TEXT_LIMIT for chunk in chunks)
    assert all(len(FENCE_LINE.findall(chunk)) % 2 == 0 for chunk in chunks)


@settings(max_examples=150, deadline=None)
@given(answer=answer_text)
def test_discord_output_path(answer: str) -> None:
    chunks = split_text(answer, DISCORD_TEXT_LIMIT)
    assert all(len(chunk) <= DISCORD_TEXT_LIMIT for chunk in chunks)
    assert _visible("".join(chunks)) == _visible(answer)
