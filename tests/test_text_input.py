"""What a person types reaches the model unaltered: joiners, non-joiners and conjuncts survive cleaning.

Both through :func:`bot.text.clean_input` and through the real ``python -m bot console`` in a pipe,
where the fake OpenAI echoes exactly what it was sent.
"""

from __future__ import annotations

import unicodedata

import pytest

from bot.text import clean_input
from tests.fakes.openai_server import FakeOpenAI
from tests.support.console import base_env, run_console

FAMILY = "\U0001F468\u200D\U0001F469\u200D\U0001F467"
"""👨‍👩‍👧: one family, three people joined by ZERO WIDTH JOINER."""
RAINBOW_FLAG = "\U0001F3F3\uFE0F\u200D\U0001F308"
PERSIAN = "\u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645"
"""می‌خواهم ("I want"): the prefix mi- is written apart from the verb with ZERO WIDTH NON-JOINER."""
DEVANAGARI = "\u0915\u094D\u0937\u092E\u093E"
"""क्षमा ("forgiveness"): क + virama + ष is the conjunct क्ष."""
HALF_FORM = "\u0915\u094D\u200D\u0937"
"""क्‍ष: ZERO WIDTH JOINER after the virama asks for the half form of क."""
BENGALI_RA_PHALA = "\u09B0\u200C\u09CD\u09AF"
"""The ZWNJ of Bengali spelling (র‌্য, as in র‌্যাব), kept in place."""

TYPED = [FAMILY, RAINBOW_FLAG, PERSIAN, DEVANAGARI, HALF_FORM, BENGALI_RA_PHALA, "नमस्ते दुनिया", "שלום עולם", "مرحبا"]


@pytest.mark.parametrize("text", TYPED)
def test_what_a_person_types_survives(text: str) -> None:
    assert clean_input(text) == unicodedata.normalize("NFC", text)
    assert clean_input(f"  {text} and more\r\n") == unicodedata.normalize("NFC", f"{text} and more")


def test_the_family_stays_one_family() -> None:
    assert clean_input(f"my {FAMILY}") == f"my {FAMILY}"
    assert clean_input(f"my {FAMILY}").count("\u200D") == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pay\u202Egnp.exe", "paygnp.exe"),  # RIGHT-TO-LEFT OVERRIDE: shows as "payexe.png"
        ("a\u202Db\u202Ac\u202Bd\u202Ce", "abcde"),  # the other embeddings and overrides, and PDF
        ("x\u2066y\u2067z\u2068w\u2069", "xyzw"),  # isolates
        ("nul\x00byte", "nulbyte"),
        ("bell\x07 and esc\x1b[2J", "bell and esc[2J"),
        ("\ud83dlone surrogate", "lone surrogate"),
        ("line\nand\ttab", "line\nand\ttab"),
    ],
)
def test_unsafe_characters_go(text: str, expected: str) -> None:
    assert clean_input(text) == expected


async def test_the_model_gets_the_joiners_from_the_console(fake_openai: FakeOpenAI) -> None:
    lines = [FAMILY, PERSIAN, HALF_FORM, "evil\u202Etxt.exe"]
    code, out, err = await run_console(base_env(fake_openai), "".join(f"{line}\n" for line in lines))
    assert code == 0, err
    assert out.splitlines() == [f"echo: {FAMILY}", f"echo: {PERSIAN}", f"echo: {HALF_FORM}", "echo: eviltxt.exe"]
