"""Tests for bot.text: input cleaning, mention stripping, Markdown → mrkdwn, fence-aware splitting."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.discord.reply import DISCORD_TEXT_LIMIT
from adapters.kit.text import split_text, strip_mentions
from adapters.slack.mrkdwn import SLACK_TEXT_LIMIT, markdown_to_mrkdwn
from bot.text import clean_input

PROPERTY = settings(max_examples=300, deadline=None)

# --------------------------------------------------------------------------- helpers (independent)

_OPEN = re.compile(r"[ \t]*(`{3,})[^`]*")
_CLOSE = re.compile(r"[ \t]*(`{3,})[ \t\r]*")


def open_fence(text: str) -> str | None:
    """The opening line of the code block still open at the end of ``text`` (documented grammar)."""
    opener: str | None = None
    for line in text.split("\n"):
        if opener is None:
            opener = line if _OPEN.fullmatch(line) else None
        else:
            close = _CLOSE.fullmatch(line)
            opener_ticks = _OPEN.fullmatch(opener)
            assert opener_ticks is not None
            if close and len(close[1]) >= len(opener_ticks[1]):
                opener = None
    return opener


def reassembles(original: str, chunks: list[str]) -> bool:
    """Whether the chunks, minus added close/reopen fence lines, spell ``original`` in order.

    Only whitespace at split points may differ. An added close is ambiguous with a real one, so both
    readings are tried against the original.
    """

    def walk(index: int, pos: int, reopen: str | None) -> bool:
        while pos < len(original) and original[pos].isspace():
            pos += 1
        if index == len(chunks):
            return pos == len(original)
        chunk = chunks[index]
        if reopen is not None:
            if not chunk.startswith(reopen + "\n"):
                return False
            chunk = chunk[len(reopen) + 1 :]
        readings: list[tuple[str, str | None]] = [(chunk, None)]
        closing = re.search(r"\n(`{3,})\Z", chunks[index])
        if closing:
            left_open = open_fence(chunks[index][: closing.start()])
            if left_open is not None:
                readings.append((chunk[: -len(closing.group())], left_open))
        for body, carried in readings:
            piece = body.strip()
            if original.startswith(piece, pos) and walk(index + 1, pos + len(piece), carried):
                return True
        return False

    return walk(0, 0, None)


def check_split(text: str, limit: int) -> list[str]:
    chunks = split_text(text, limit)
    for chunk in chunks:
        assert len(chunk) <= limit
        assert chunk.strip(), "empty chunk"
        assert open_fence(chunk) is None, f"unbalanced fence in {chunk!r}"
    assert reassembles(text, chunks)
    return chunks


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------------- clean_input


def test_clean_input_rules() -> None:
    assert clean_input("  hi\r\nthere\rnow\t ") == "hi\nthere\nnow"
    assert clean_input("a\x00b\x07c\x1bd\x7fe\x85f") == "abcdef"
    assert clean_input("tab\tand\nnewline") == "tab\tand\nnewline"
    assert clean_input("in\u200bvi\u200esi\u202eble\u2066\ufeff") == "invisible"
    assert clean_input("e\u0301") == "\u00e9"  # NFC
    assert clean_input("e\u200b\u0301") == "\u00e9"  # composed once the zero-width space is gone
    assert clean_input("\ud800lone") == "lone"  # lone surrogate
    assert clean_input("") == ""
    assert clean_input(" \u200b \n ") == ""


@PROPERTY
@given(st.text(st.characters(exclude_categories=())))
def test_clean_input_properties(text: str) -> None:
    cleaned = clean_input(text)
    assert clean_input(cleaned) == cleaned
    assert cleaned == cleaned.strip()
    assert unicodedata.is_normalized("NFC", cleaned)
    for char in cleaned:
        assert char in "\n\t" or unicodedata.category(char) not in ("Cc", "Cs")
        # The joiners U+200C and U+200D stay: emoji sequences and Persian/Indic spelling need them.
        assert char in "\u200c\u200d" or not ("\u200b" <= char <= "\u200f" or "\u202a" <= char <= "\u202e")
        assert not ("\u2066" <= char <= "\u2069" or char == "\ufeff")


# ------------------------------------------------------------------------------- strip_mentions


def test_strip_mentions() -> None:
    assert strip_mentions("<@U123> hello", ["<@U123>"]) == "hello"
    assert strip_mentions("hey <@U123> there", ["<@U123>"]) == "hey there"
    assert strip_mentions("hey <@U123>  <@U9>  there <@U123>", ["<@U123>", "<@U9>"]) == "hey there"
    assert strip_mentions("<@123> a\n<@!123> b", ["<@123>", "<@!123>"]) == "a\nb"
    assert strip_mentions("<@<@U1>U1> x", ["<@U1>"]) == "x"
    assert strip_mentions("  nothing  ", []) == "nothing"
    assert strip_mentions("keep <@U2>", ["<@U1>", ""]) == "keep <@U2>"


@PROPERTY
@given(
    st.lists(st.from_regex(r"<@!?[A-Z0-9]{1,4}>", fullmatch=True), min_size=1, max_size=3),
    st.lists(st.text(max_size=8) | st.integers(0, 2), max_size=12),
)
def test_strip_mentions_removes_all(tokens: list[str], parts: list[str | int]) -> None:
    text = "".join(tokens[part % len(tokens)] if isinstance(part, int) else part for part in parts)
    result = strip_mentions(text, tokens)
    assert all(token not in result for token in tokens)
    assert result == result.strip()


# --------------------------------------------------------------------------- markdown_to_mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("# Title", "*Title*"),
        ("### Third level ###", "*Third level*"),
        ("###### Six", "*Six*"),
        ("## **Bold** heading", "*Bold heading*"),
        ("#hashtag", "#hashtag"),
        ("#", "#"),
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("***both***", "*_both_*"),
        ("**bold with *italic* inside**", "*bold with _italic_ inside*"),
        ("~~strike~~", "~strike~"),
        ("snake_case_name and 2 * 3 * 4", "snake_case_name and 2 * 3 * 4"),
        ("[label](https://example.com/x)", "<https://example.com/x|label>"),
        ("[**bold** label](https://e.com/?a=1&b=2)", "<https://e.com/?a=1&amp;b=2|*bold* label>"),
        ("see https://example.com/a_b_c_ now", "see https://example.com/a_b_c_ now"),
        ("**https://example.com/a_b**", "*https://example.com/a_b*"),
        ("<https://example.com>", "<https://example.com>"),
        ("- item", "• item"),
        ("* item", "• item"),
        ("+ item", "• item"),
        ("- one\n  - two\n    * three", "• one\n  • two\n    • three"),
        ("1. first\n2) second", "1. first\n2) second"),
        ("> quoted **text**", "> quoted *text*"),
        ("> # Quoted heading", "> *Quoted heading*"),
        ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
        ("<@U123> <!channel>", "&lt;@U123&gt; &lt;!channel&gt;"),
        ("use `**x** <y> & _z_` here", "use `**x** &lt;y&gt; &amp; _z_` here"),
        ("``code with ` tick``", "``code with ` tick``"),
        ("\\*not italic\\* 1\\. x", "\\*not italic\\* 1. x"),
        ("---", "---"),
        ("| **a** | b |\n|---|:-:|\n| <c> | d |", "| **a** | b |\n|---|:-:|\n| &lt;c&gt; | d |"),
    ],
)
def test_markdown_to_mrkdwn_examples(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


def test_code_block_untouched_and_language_dropped() -> None:
    markdown = "Intro **b**\n\n```python\n# not a heading\n- not a list\n**x** < y & z\n```\nafter *i*"
    assert markdown_to_mrkdwn(markdown) == (
        "Intro *b*\n\n```\n# not a heading\n- not a list\n**x** &lt; y &amp; z\n```\nafter _i_"
    )


def test_code_block_fences_follow_commonmark_lengths() -> None:
    markdown = "````md\n```python\ninner\n```\n````\n**b**"
    assert markdown_to_mrkdwn(markdown) == "````\n```python\ninner\n```\n````\n*b*"


def test_unclosed_code_block_is_closed() -> None:
    assert markdown_to_mrkdwn("text\n```js\nlet a = 1 < 2;") == "text\n```\nlet a = 1 &lt; 2;\n```"


def test_indented_code_block_in_list() -> None:
    markdown = "- step:\n  ```bash\n  echo **hi** > out\n  ```"
    assert markdown_to_mrkdwn(markdown) == "• step:\n  ```\n  echo **hi** &gt; out\n  ```"


@PROPERTY
@given(st.text(st.characters(exclude_categories=())))
def test_markdown_to_mrkdwn_never_crashes(text: str) -> None:
    rendered = markdown_to_mrkdwn(text)
    assert bool(rendered.strip()) == bool(text.strip()), "non-blank input must not render blank"


_PROSE = st.text(st.characters(exclude_characters="`\\"), max_size=40)


@PROPERTY
@given(_PROSE, st.sampled_from(["", "python", "js title", " c++ "]), st.text(max_size=80), _PROSE)
def test_markdown_keeps_code_block_content(before: str, lang: str, code: str, after: str) -> None:
    ticks = "`" * (3 + max((len(run) for run in re.findall("`+", code)), default=0))
    markdown = f"{before}\n{ticks}{lang}\n{code}\n{ticks}\n{after}"
    assert f"\n{ticks}\n{escape(code)}\n{ticks}\n" in markdown_to_mrkdwn(markdown)


@PROPERTY
@given(_PROSE, st.text(st.characters(exclude_characters="`\n"), min_size=1))
def test_markdown_keeps_inline_code_content(before: str, code: str) -> None:
    out = markdown_to_mrkdwn(f"{before} `{code}` {before}")
    assert f"`{escape(code)}`" in out
    assert unescape(escape(code)) == code


# ---------------------------------------------------------------------------------- split_text


def _long_document(size: int) -> str:
    words = "the quick brown fox jumps over the lazy dog while Slack and Discord watch".split()
    parts: list[str] = []
    index = 0
    while sum(map(len, parts)) < size:
        index += 1
        parts.append(" ".join(words[(index + k) % len(words)] for k in range(40 + index % 50)))
        if index % 4 == 0:
            body = "\n".join(f"    value_{k} = compute({k}, {index})  # step {k}" for k in range(index * 3))
            parts.append(f"```python\ndef block_{index}():\n{body}\n```")
    return "\n\n".join(parts)[:size].rstrip() + "\n\nThe end."


def test_split_slack_long_text_with_code_blocks() -> None:
    text = _long_document(10_000)
    assert len(text) > 9_000 and text.count("```python") >= 3
    chunks = check_split(text, SLACK_TEXT_LIMIT)
    assert len(chunks) >= 3
    assert chunks[-1].endswith("The end.")


def test_split_discord_text() -> None:
    text = _long_document(5_000)
    chunks = check_split(text, DISCORD_TEXT_LIMIT)
    assert len(chunks) >= 3


def test_split_closes_and_reopens_fence_with_language() -> None:
    code = "\n".join(f"print({k})  # {'x' * 20}" for k in range(30))
    text = f"Here is code:\n\n```python\n{code}\n```\n\nDone."
    chunks = check_split(text, 300)
    inside = [chunk for chunk in chunks if "print(" in chunk]
    assert len(inside) >= 3
    for chunk in inside[:-1]:
        assert chunk.splitlines()[0] in ("Here is code:", "```python")
        assert chunk.endswith("\n```")
    assert inside[-1].startswith("```python\nprint(") and inside[-1].endswith("```\n\nDone.")
    assert inside[1].startswith("```python\nprint(")
    assert sum(chunk.count("print(") for chunk in chunks) == 30


def test_split_prefers_blank_lines_then_lines_then_spaces() -> None:
    first, second = "a" * 30, "b" * 30
    assert split_text(f"{first}\n{first}\n\n{second}", 70) == [f"{first}\n{first}", second]
    assert split_text(f"{first} {first}\n{second}", 70) == [f"{first} {first}", second]
    words = " ".join(["word"] * 30)
    chunks = check_split(words, 50)
    assert all(chunk.startswith("word") and chunk.endswith("word") for chunk in chunks)


def test_split_hard_cuts_only_overlong_lines() -> None:
    text = "short line\n" + "x" * 130 + "\nlast"
    chunks = check_split(text, 50)
    assert chunks[0] == "short line"
    assert "".join(chunks[1:-1]) + chunks[-1].removesuffix("\nlast") == "x" * 130
    assert all(len(chunk) == 50 for chunk in chunks[1:3])


def test_split_keeps_indentation_after_split() -> None:
    code = "\n".join(f"    line_{k} = {k}" for k in range(10))
    chunks = check_split(f"```\n{code}\n```", 60)
    assert chunks[1].startswith("```\n    line_")


def test_split_no_empty_code_block_around_fences() -> None:
    text = "p" * 20 + "\n```python\n" + "\n".join("c" * 25 for _ in range(4)) + "\n```"
    for chunk in check_split(text, 60):
        assert "```python\n```" not in chunk


def test_split_small_text_and_edge_cases() -> None:
    assert split_text("hello", 40) == ["hello"]
    assert split_text("", 100) == []
    assert split_text(" \n\t\n ", 100) == []
    assert split_text("```\nopen block", 100) == ["```\nopen block\n```"]
    with pytest.raises(ValueError):
        split_text("hello", 39)


_MARKDOWN_PIECES = st.sampled_from(
    ["```", "```python", "````", "~~~", "`", "\n", "\n\n", " ", "  ", "\t", "word", "x" * 45, "# h", "- i"]
)


@PROPERTY
@given(
    st.lists(_MARKDOWN_PIECES | st.text(max_size=6), max_size=60).map("".join),
    st.integers(40, 120),
)
def test_split_properties_fence_heavy(text: str, limit: int) -> None:
    check_split(text, limit)


@PROPERTY
@given(st.text(st.characters(exclude_categories=())), st.integers(40, 90))
def test_split_properties_arbitrary_unicode(text: str, limit: int) -> None:
    check_split(text, limit)


@PROPERTY
@given(
    st.lists(
        st.tuples(st.sampled_from(["", "python", "js"]), st.lists(st.text("ab <&\t", max_size=50))),
        max_size=6,
    ),
    st.integers(40, 400),
)
def test_split_realistic_markdown_keeps_fences_paired(blocks: list[tuple[str, list[str]]], limit: int) -> None:
    text = "\n\n".join(f"Para {i}.\n```{lang}\n" + "\n".join(lines) + "\n```" for i, (lang, lines) in enumerate(blocks))
    for chunk in check_split(text, limit):
        fence_lines = [line for line in chunk.split("\n") if line.startswith("```")]
        assert len(fence_lines) % 2 == 0
