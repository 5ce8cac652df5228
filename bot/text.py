"""The text path shared by all adapters: input cleaning, Markdown to Slack mrkdwn, fence-aware splitting.

Pure functions, no I/O. Both :func:`markdown_to_mrkdwn` and :func:`split_text` recognise code fences
with the same small grammar: a line made of optional indentation, three or more backticks and an info
string without backticks opens a block; inside it, a line of at least as many backticks (plus optional
surrounding blanks) closes it. A block that is never closed runs to the end of the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from itertools import chain

SLACK_TEXT_LIMIT: int = 3900
"""Safe per-message chunk for ``chat.postMessage`` text or a section block (Slack truncates past 4000)."""
DISCORD_TEXT_LIMIT: int = 2000

_MIN_LIMIT = 40

# ------------------------------------------------------------------------------------------ input

_INVISIBLE = frozenset(
    chr(code) for code in chain(range(0x200B, 0x2010), range(0x202A, 0x202F), range(0x2066, 0x206A), [0xFEFF])
)


def _keep(char: str) -> bool:
    """Control characters (bar newline and tab), invisible/bidi-override marks and lone surrogates go."""
    if char in "\n\t":
        return True
    return char not in _INVISIBLE and unicodedata.category(char) not in ("Cc", "Cs")


def clean_input(text: str) -> str:
    """Normalise what a user typed; never raises.

    Characters are dropped *before* NFC so that a removed mark cannot leave a decomposed pair behind,
    which keeps the function idempotent.
    """
    unified = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(char for char in unified if _keep(char))
    return unicodedata.normalize("NFC", kept).strip()


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

_OPENER = re.compile(r"(?P<indent>[ \t]*)(?P<ticks>`{3,})(?P<info>[^`]*)")
_CLOSER = re.compile(r"[ \t]*(?P<ticks>`{3,})[ \t\r]*")


def _ticks(opener: str) -> str:
    match = _OPENER.fullmatch(opener)
    return match["ticks"] if match else "```"


def _closes(line: str, ticks: str) -> bool:
    match = _CLOSER.fullmatch(line)
    return match is not None and len(match["ticks"]) >= len(ticks)


def _fence_step(opener: str | None, line: str) -> str | None:
    """Fence state after ``line``: the opening line of the block still open, or None outside code."""
    if opener is None:
        return line if _OPENER.fullmatch(line) else None
    return None if _closes(line, _ticks(opener)) else opener


# ------------------------------------------------------------------------------ Markdown → mrkdwn


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_url(url: str) -> str:
    return url.replace("&", "&amp;").replace("|", "%7C")


_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t]+(?P<title>.*?))?(?:[ \t]+#+)?[ \t]*")
_RULE = re.compile(r"[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*")
_BULLET = re.compile(r"(?P<indent>[ \t]*)[-*+][ \t]+(?=\S)")
_QUOTE = re.compile(r"(?:[ \t]*>[ \t]?)+")
_TABLE_RULE = re.compile(r"[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*")
_TOKEN = re.compile(
    r"\\(?P<escaped>[!-/:-@\[-`{-~])"
    r"|(?P<code>(?<!`)(?P<run>`+)(?!`).+?(?<!`)(?P=run)(?!`))"
    r"|!?\[(?P<label>[^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*)\]\([ \t]*"
    r"(?P<href>[A-Za-z][A-Za-z0-9+.\-]*:[^\s()<>]*(?:\([^\s()<>]*\)[^\s()<>]*)*)(?:[ \t]+\"[^\"]*\")?[ \t]*\)"
    r"|<(?P<auto>[A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*)>"
    r"|(?P<bare>https?://[^\s<>`]*[^\s<>`.,;:!?'\")\]*_~])"
)
_EMPHASIS = re.compile(
    r"\*\*\*(?P<strong_em>[^\s*](?:.*?[^\s*])?)\*\*\*(?!\*)"
    r"|(?<!\*)\*\*(?P<strong>[^\s*](?:.*?[^\s*])?)\*\*(?!\*)"
    r"|(?<!\w)__(?P<strong_u>[^\s_](?:.*?[^\s_])?)__(?!\w)"
    r"|(?<![\w*])\*(?P<em>[^\s*](?:.*?[^\s*])?)\*(?![\w*])"
    r"|(?<!\w)_(?P<em_u>[^\s_](?:.*?[^\s_])?)_(?!\w)"
    r"|~~(?P<strike>[^\s~](?:.*?[^\s~])?)~~(?!~)"
)
_MAX_NESTING = 16


def _sentinel(text: str) -> str:
    """A private-use character absent from ``text``, to mark stashed spans unambiguously."""
    present = set(text)
    return next(char for char in map(chr, range(0xE000, 0x110000)) if char not in present)


def _emphasis(text: str, in_bold: bool, depth: int = 0) -> str:
    """Markdown emphasis to mrkdwn; inside a bold context (headings) bold markers are dropped."""
    if depth > _MAX_NESTING:
        return text

    def convert(match: re.Match[str]) -> str:
        kind = match.lastgroup or "strike"
        inner = _emphasis(match[kind], in_bold or kind.startswith("strong"), depth + 1)
        if kind == "strong_em":
            return f"_{inner}_" if in_bold else f"*_{inner}_*"
        if kind.startswith("strong"):
            return inner if in_bold else f"*{inner}*"
        return f"~{inner}~" if kind == "strike" else f"_{inner}_"

    return _EMPHASIS.sub(convert, text)


def _render_inline(text: str, sentinel: str, in_bold: bool = False) -> str:
    """Convert one line's inline Markdown, leaving code spans and URLs alone, and escape it for Slack.

    Code spans, links and URLs are stashed behind ``sentinel`` placeholders first, so emphasis rules
    never reach inside them, then everything else is converted and escaped.
    """
    stash: list[str] = []

    def keep(match: re.Match[str]) -> str:
        stash.append(_render_token(match, sentinel, in_bold))
        return f"{sentinel}{len(stash) - 1}{sentinel}"

    converted = _escape(_emphasis(_TOKEN.sub(keep, text), in_bold))
    placeholder = re.compile(f"{re.escape(sentinel)}(\\d+){re.escape(sentinel)}")
    return placeholder.sub(lambda match: stash[int(match[1])], converted)


def _render_token(match: re.Match[str], sentinel: str, in_bold: bool) -> str:
    if (escaped := match["escaped"]) is not None:
        # Slack has no backslash escapes: keep them where dropping one would create formatting.
        return "\\" + escaped if escaped in "*_~`" else _escape(escaped)
    if match["code"] is not None:
        return _escape(match["code"])
    if (href := match["href"]) is not None:
        label = match["label"].strip()
        shown = "|" + _render_inline(label, sentinel, in_bold) if label else ""
        return f"<{_escape_url(href)}{shown}>"
    if (auto := match["auto"]) is not None:
        return f"<{_escape_url(auto)}>"
    return _escape(match["bare"])


def _convert_line(line: str, sentinel: str) -> str:
    """One line outside code blocks and tables."""
    if quote := _QUOTE.match(line):
        return quote.group() + _convert_line(line[quote.end() :], sentinel)
    heading = _HEADING.fullmatch(line)
    if heading and heading["title"] and heading["title"].strip():
        return f"*{_render_inline(heading['title'].strip(), sentinel, in_bold=True)}*"
    if _RULE.fullmatch(line):
        return line
    if bullet := _BULLET.match(line):
        return f"{bullet['indent']}• {_render_inline(line[bullet.end() :], sentinel)}"
    return _render_inline(line, sentinel)


def _starts_table(lines: list[str], index: int) -> bool:
    return "|" in lines[index] and index + 1 < len(lines) and bool(_TABLE_RULE.fullmatch(lines[index + 1]))


def markdown_to_mrkdwn(text: str) -> str:
    """Render model Markdown as Slack mrkdwn.

    Code blocks and inline code keep their exact content (only ``&``, ``<``, ``>`` are escaped, as
    Slack requires everywhere); a fence's language tag is dropped because Slack would print it, and a
    block left open at the end is closed. Table lines are only escaped.
    """
    sentinel = _sentinel(text)
    lines = text.split("\n")
    out: list[str] = []
    fence: str | None = None
    in_table = False
    for index, line in enumerate(lines):
        if fence is not None:
            closed = _closes(line, fence)
            out.append(line if closed else _escape(line))
            fence = None if closed else fence
        elif opener := _OPENER.fullmatch(line):
            fence, in_table = opener["ticks"], False
            out.append(opener["indent"] + fence)
        else:
            in_table = ("|" in line and in_table) or _starts_table(lines, index)
            out.append(_escape(line) if in_table else _convert_line(line, sentinel))
    if fence is not None:
        out.append(fence)
    return "\n".join(out)


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
