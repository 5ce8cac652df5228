"""Markdown as the model writes it -> Slack mrkdwn, and the size of one Slack message.

Pure functions, no I/O. Code fences are recognised with the grammar of :mod:`adapters.kit.text`, so
rendering and splitting always agree on what is code.
"""

from __future__ import annotations

import re

from adapters.kit.text import FENCE_OPENER, closes_fence

SLACK_TEXT_LIMIT: int = 3900
"""Safe per-message chunk for ``chat.postMessage`` text or a section block (Slack truncates past 4000)."""



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
            closed = closes_fence(line, fence)
            out.append(line if closed else _escape(line))
            fence = None if closed else fence
        elif opener := FENCE_OPENER.fullmatch(line):
            fence, in_table = opener["ticks"], False
            out.append(opener["indent"] + fence)
        else:
            in_table = ("|" in line and in_table) or _starts_table(lines, index)
            out.append(_escape(line) if in_table else _convert_line(line, sentinel))
    if fence is not None:
        out.append(fence)
    return "\n".join(out)
