"""The safety layer of the message path: redaction before anything leaves, and the moderation gate.

Redaction (``REDACT_PATTERNS``): named regular expressions, built-ins (:data:`BUILTIN_PATTERNS`: e-mail
addresses, common API-key shapes) or the operator's own, replace what they match in the user's text,
the quoted context and text files with ``[redacted <name>]`` before the turn goes to the assistant or
the moderation endpoint. The kept turns hold the redacted form too: nothing unredacted is stored.

Moderation (``MODERATION=off|input|both``): the user's (redacted) words go to the moderation endpoint
first; flagged input gets :data:`FLAGGED_INPUT` and no assistant call. With ``both`` the answer is
checked as well before anyone sees it (so it is not streamed), and a flagged answer is replaced by
:data:`FLAGGED_ANSWER`. Logs name the categories only, never the text. The endpoint itself is the
assistants' business (:mod:`bot.assistants.moderation`); a failing check fails closed (the user gets
the usual "unavailable" sentence), because the operator asked for every message to be checked.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from bot.domain import ThreadKey, UserTurn
from bot.metrics import Metrics

log = logging.getLogger("threadkeeper.safety")

BUILTIN_PATTERNS: dict[str, str] = {
    "email": r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
             r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}",
    "api_key": r"(?<![\w-])(?:sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,}|xox[abeprs]-[A-Za-z0-9-]{10,}"
               r"|xapp-[A-Za-z0-9-]{10,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
               r"|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,})",
}
"""Patterns anyone can name in ``REDACT_PATTERNS`` without writing them."""

FLAGGED_INPUT = "I can't help with that message."
FLAGGED_ANSWER = "I can't share the answer I came up with. Please ask in another way."

Mode = Literal["off", "input", "both"]
Moderate = Callable[[str], Awaitable[list[str]]]
"""Send a text to the moderation endpoint; the flagged categories (empty when nothing is flagged)."""
Patterns = tuple[tuple[str, "re.Pattern[str]"], ...]

_ITEM = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)\s*(?:=\s*/((?:\\.|[^\\/])*)/)?\s*(?:,|$)")


def parse_patterns(spec: str | None) -> Patterns:
    """``email, api_key, ticket=/TCK-\\d{4,}/`` -> named, compiled patterns (a ``/`` inside is written ``\\/``).

    Raises ValueError with one line: an unknown built-in, a bad regular expression, one that matches
    the empty string, a name given twice.
    """
    found: list[tuple[str, re.Pattern[str]]] = []
    text = spec or ""
    pos = 0
    while text[pos:].strip():
        match = _ITEM.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"cannot read {text[pos:pos + 30].strip()!r}: write built-in names "
                             f"({', '.join(BUILTIN_PATTERNS)}) or name=/regex/, separated by commas")
        name, regex = match.group(1), match.group(2)
        if regex is None:
            if name not in BUILTIN_PATTERNS:
                raise ValueError(f"{name!r} is no built-in pattern (built-ins: {', '.join(BUILTIN_PATTERNS)}); "
                                 f"write {name}=/regex/ for your own")
            regex = BUILTIN_PATTERNS[name]
        try:
            compiled = re.compile(regex)
        except re.error as exc:
            raise ValueError(f"{name}: not a valid regular expression ({exc.msg})") from None
        if compiled.fullmatch(""):
            raise ValueError(f"{name}: the pattern matches an empty text; it would redact nothing useful")
        if any(name == seen for seen, _ in found):
            raise ValueError(f"{name}: named twice")
        found.append((name, compiled))
        pos = match.end()
    return tuple(found)


class Redactor:
    """Replaces what the patterns match with ``[redacted <name>]``."""

    def __init__(self, patterns: Patterns, metrics: Metrics | None = None) -> None:
        self.patterns = patterns
        self.metrics = metrics

    def text(self, text: str) -> str:
        for name, pattern in self.patterns:
            text, count = pattern.subn(f"[redacted {name}]", text)
            if count and self.metrics is not None:
                self.metrics.redactions.labels(name).inc(count)
        return text

    def turn(self, turn: UserTurn) -> UserTurn:
        """The turn with its text, the quoted context and text files redacted (images and PDFs as they are)."""
        if not self.patterns:
            return turn
        context = tuple(dataclasses.replace(q, text=self.text(q.text)) for q in turn.context)
        files = tuple(dataclasses.replace(a, text=self.text(a.text)) if a.kind == "text" else a
                      for a in turn.attachments)
        return dataclasses.replace(turn, text=self.text(turn.text), context=context, attachments=files)


class Safety:
    """Redaction and moderation, as the core applies them to one message."""

    def __init__(self, mode: Mode = "off", patterns: Patterns = (), *, moderate: Moderate | None = None,
                 metrics: Metrics | None = None, close: Callable[[], Awaitable[None]] | None = None) -> None:
        if mode != "off" and moderate is None:
            raise ValueError("moderation needs a moderation endpoint")
        self.mode = mode
        self.redactor = Redactor(patterns, metrics)
        self.moderate = moderate
        self.metrics = metrics or Metrics()
        self._close = close

    @property
    def holds_answers(self) -> bool:
        """Answers are checked before anyone sees them: no streaming."""
        return self.mode == "both"

    def redact(self, turn: UserTurn) -> UserTurn:
        return self.redactor.turn(turn)

    async def screen_input(self, key: ThreadKey, turn: UserTurn) -> str | None:
        """The sentence for the user when their words are flagged; None to go on."""
        if self.mode == "off" or not turn.text.strip():
            return None
        return await self._screen(key, "input", [turn.text], FLAGGED_INPUT)

    async def screen_answer(self, key: ThreadKey, text: str) -> str | None:
        """With ``MODERATION=both``: the sentence that replaces a flagged answer; None to show it."""
        if self.mode != "both" or not text.strip():
            return None
        return await self._screen(key, "answer", [text], FLAGGED_ANSWER)

    async def _screen(self, key: ThreadKey, direction: str, texts: Sequence[str], sentence: str) -> str | None:
        assert self.moderate is not None
        categories: list[str] = []
        for text in texts:
            categories += await self.moderate(text)
        if not categories:
            return None
        self.metrics.moderation_flagged.labels(direction).inc()
        log.info("moderation flagged the %s of %s (categories: %s)", direction, key.digest,
                 ", ".join(sorted(set(categories))))
        return sentence

    async def close(self) -> None:
        if self._close is not None:
            await self._close()
