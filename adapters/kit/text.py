"""The text path every adapter shares: mention stripping and fence-aware splitting for a message limit.

Pure functions, no I/O. Code fences follow one small grammar, which :mod:`adapters.slack.mrkdwn` uses
too: a line made of optional indentation, three or more backticks and an info string without backticks
opens a block; inside it, a line of at least as many backticks (plus optional surrounding blanks)
closes it. A block that is never closed runs to the end of the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from itertools import chain

_MIN_LIMIT = 40

# ---------------------------------------------------------------------------------------- mentions


def strip_mentions(text: str, mentions: Iterable[str]) -> str:
    """Remove every mention token and close the gap it leaves; blank tokens are ignored.

    Runs until nothing matches, so a token glued together by a removal (``<@<@U1>U1>``) goes too.
    """
    tokens = sorted({token for token in mentions if token.strip()}, key=len, reverse=True)
    if not tokens:
        return text.strip()
    alternatives = "|".join(re.escape(token) for token in tokens)
    pattern = re.compile(rf"[^\S\n]*(?:(?:{alternatives})[^\S\n]*)+")
    previous = None
    while text != previous:
        previous, text = text, pattern.sub(_close_gap, text)
    return text.strip()


def _close_gap(match: re.Match[str]) -> str:
    """One space where a mention sat between words; nothing at a line edge or when it was glued on."""
    source, (start, end) = match.string, match.span()
    at_edge = start == 0 or end == len(source) or source[start - 1] == "\n" or source[end] == "\n"
    spaced = match.group()[0].isspace() or match.group()[-1].isspace()
    return " " if spaced and not at_edge else ""


# ----------------------------------------------------------------------------------- code fences

FENCE_OPENER = re.compile(r"(?P<indent>[ \t]*)(?P<ticks>`{3,})(?P<info>[^`]*)")
"""A line that opens a code block (``fullmatch``): groups ``indent``, ``ticks`` and ``info``."""
_CLOSER = re.compile(r"[ \t]*(?P<ticks>`{3,})[ \t\r]*")


def _ticks(opener: str) -> str:
    match = FENCE_OPENER.fullmatch(opener)
    return match["ticks"] if match else "```"


def closes_fence(line: str, ticks: str) -> bool:
    """Whether ``line`` closes a block opened with ``ticks``."""
    match = _CLOSER.fullmatch(line)
    return match is not None and len(match["ticks"]) >= len(ticks)


def _fence_step(opener: str | None, line: str) -> str | None:
    """Fence state after ``line``: the opening line of the block still open, or None outside code."""
    if opener is None:
        return line if FENCE_OPENER.fullmatch(line) else None
    return None if closes_fence(line, _ticks(opener)) else opener


# --------------------------------------------------------------------------------------- splitting

_SPACE_RUN = re.compile(r"[ \t]+")
_GAP = re.compile(r"\s*")
_BLANK_AT = re.compile(r"[^\S\n]*(?:\n|\Z)")
_OPENER_AT = re.compile(r"[ \t]*`{3,}[^`\n]*(?:\n|\Z)")
_CLOSER_AT = re.compile(r"[ \t]*(`{3,})[ \t\r]*(?:\n|\Z)")
_ENTITIES = ("&amp;", "&lt;", "&gt;")


def _reopen(opener: str | None) -> str:
    return "" if opener is None else opener + "\n"


def _close(opener: str | None) -> str:
    return "" if opener is None else "\n" + _ticks(opener)


def _splits_cluster(text: str, at: int) -> bool:
    """Whether a hard cut at ``at`` would split a combined character or a Slack entity (``&amp;``)."""
    if at >= len(text):
        return False
    if unicodedata.combining(text[at]) or text[at] in "\u200d\ufe0f" or text[at - 1] == "\u200d":
        return True
    amp = text.rfind("&", max(0, at - 4), at)
    return amp >= 0 and any(text.startswith(entity, amp) and amp + len(entity) > at for entity in _ENTITIES)


class _Window:
    """The stretch of text one chunk may cover, with its cut points and fence state per line."""

    def __init__(self, text: str, pos: int, carry: str | None, limit: int) -> None:
        self.text, self.pos, self.carry, self.limit = text, pos, carry, limit
        self.prefix = len(_reopen(carry))
        self.end = min(len(text), pos + limit - self.prefix)
        self.line_state: dict[int, str | None] = {}
        self.preferred: list[int] = []  # blank lines and code-block edges outside code
        self.lines: list[int] = []  # line ends, bar those that would leave an empty code block
        state, start = carry, pos
        while True:
            self.line_state[start] = state
            newline = text.find("\n", start, self.end + 1)
            if newline < 0:
                break
            after = _fence_step(state, text[start:newline])
            self._classify(newline, state, after)
            state, start = after, newline + 1

    def _classify(self, newline: int, before: str | None, after: str | None) -> None:
        nxt = newline + 1
        if after is None:
            if before is not None or _BLANK_AT.match(self.text, nxt) or _OPENER_AT.match(self.text, nxt):
                self.preferred.append(newline)
            self.lines.append(newline)
            return
        closer = _CLOSER_AT.match(self.text, nxt)
        if before is not None and not (closer and len(closer[1]) >= len(_ticks(after))):
            self.lines.append(newline)

    def spaces(self) -> list[int]:
        return [match.start() for match in _SPACE_RUN.finditer(self.text, self.pos + 1, self.end + 1)]

    def fit(self, cut: int) -> tuple[int, str | None] | None:
        """Where the chunk body ends and the fence state there, if cutting at ``cut`` fits the limit."""
        text, end = self.text, cut
        while end > self.pos and text[end - 1].isspace():
            end -= 1
        if end == self.pos:
            return None
        line_start = max(text.rfind("\n", self.pos, end) + 1, self.pos)
        state = _fence_step(self.line_state[line_start], text[line_start:end])
        if self.prefix + (end - self.pos) + len(_close(state)) > self.limit:
            return None
        # A block carried into the next chunk must leave that chunk room to make progress.
        if state is not None and len(_reopen(state)) + len(_close(state)) > self.limit // 2:
            return None
        return end, state


def _cut(text: str, pos: int, carry: str | None, limit: int) -> tuple[int, str | None]:
    """Choose where the chunk starting at ``pos`` ends: the best-ranked cut point in the upper half of
    the window (blank line, then line end, then space), else the furthest one anywhere, else a hard cut.
    """
    window = _Window(text, pos, carry, limit)
    if window.end == len(text) and (fit := window.fit(len(text))):
        return fit
    half = pos + (window.end - pos) // 2
    levels = (window.preferred, window.lines, window.spaces())
    for candidates in levels:
        for cut in reversed(candidates):
            if cut < half:
                break
            if fit := window.fit(cut):
                return fit
    for cut in sorted(set(chain.from_iterable(levels)), reverse=True):
        if fit := window.fit(cut):
            return fit
    hard = sorted(range(pos + 1, window.end + 1), key=lambda at: (_splits_cluster(text, at), -at))
    for cut in hard:
        if fit := window.fit(cut):
            return fit
    raise RuntimeError("split_text found no cut point")  # pragma: no cover - a 1-char body always fits


def _next_start(text: str, at: int, limit: int) -> int:
    """Skip the whitespace at a split point, keeping the next line's indentation when it is short."""
    first = _GAP.match(text, at)
    stop = first.end() if first else at
    if stop == len(text):
        return stop
    newline = text.rfind("\n", at, stop)
    line_start = newline + 1 if newline >= 0 else (0 if at == 0 else stop)
    return line_start if stop - line_start <= limit // 4 else stop


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters for a per-message limit.

    A chunk that ends inside a code block gets a closing fence, and the next one starts with the same
    opening line again; both lines count towards the limit. Whitespace at split points is dropped
    (indentation of the line after a split is kept); nothing else is lost or reordered.
    """
    if limit < _MIN_LIMIT:
        raise ValueError(f"limit must be at least {_MIN_LIMIT}, got {limit}")
    chunks: list[str] = []
    carry: str | None = None
    pos = _next_start(text, 0, limit)
    while pos < len(text):
        end, state = _cut(text, pos, carry, limit)
        chunks.append(_reopen(carry) + text[pos:end] + _close(state))
        carry, pos = state, _next_start(text, end, limit)
    return chunks
