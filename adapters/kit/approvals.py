"""What approval prompts say, on every platform (:mod:`bot.core.approvals` decides what they do).

The server, tool and arguments come from the model and an MCP server: untrusted. They are shown short
(:data:`ARGUMENTS_LIMIT`), on one line, with no backticks (so they cannot close the code span that quotes
them) and no control characters; each platform escapes the rest (Slack's ``<``, ``>``, ``&``; Discord
sends with ``allowed_mentions`` that ping nobody).
"""

from __future__ import annotations

import json
import re

from bot.domain import ToolApproval

ARGUMENTS_LIMIT = 300
"""Characters of the arguments a prompt shows (then "…")."""
NAME_LIMIT = 80

DECIDED = {"approved": "Approved", "declined": "Declined"}
NOT_YOURS = "Only the person who asked can approve or decline this."
GONE = "This request is no longer open: it was already answered, or the time to answer it ran out."
EXPIRED = "No answer in time, so the tool was not run."
WITHDRAWN = "This request was withdrawn before it was answered, so the tool was not run."
FAILED = "I could not record that just now. Please try again."

_UNSAFE = re.compile(r"[\x00-\x1f\x7f`\u2028\u2029\u200b-\u200f\u202a-\u202e]+")


def _plain(text: str, limit: int) -> str:
    text = _UNSAFE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def shown_arguments(arguments: str, limit: int = ARGUMENTS_LIMIT) -> str:
    """The arguments, compact JSON where they are JSON, on one line and cut at ``limit`` characters."""
    try:
        arguments = json.dumps(json.loads(arguments), ensure_ascii=False, separators=(", ", ": "))
    except ValueError:
        pass
    return _plain(arguments, limit) or "{}"


def parts(request: ToolApproval) -> tuple[str, str, str]:
    """(server, tool, arguments), each safe to put inside a code span."""
    return (_plain(request.server, NAME_LIMIT) or "?", _plain(request.tool, NAME_LIMIT) or "?",
            shown_arguments(request.arguments))


def decided_text(outcome: str, label: str) -> str:
    """What the prompt becomes once decided: "Approved: `docs: create_ticket`"."""
    return f"{DECIDED.get(outcome, outcome)}: `{_plain(label, 2 * NAME_LIMIT)}`" if label else DECIDED[outcome]
