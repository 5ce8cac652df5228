"""Input cleaning for every message the core receives: pure functions, no I/O.

What a person typed is kept, every letter, mark and joiner of it: the zero-width joiner (U+200D)
builds emoji sequences (👨‍👩‍👧 is one family, not three faces) and Indic conjunct forms, the
zero-width non-joiner (U+200C) is part of Persian, Kurdish and Indic spelling (می‌خواهم). Only what
is unsafe goes, and this is the one place that says why:

* control characters (bar newline and tab): they move a terminal's cursor, ring its bell or end a
  string early (NUL) in whatever logs or stores the text;
* unpaired surrogates: they are no character at all, and cannot be encoded as UTF-8 for the wire;
* the bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069): they reorder what a
  reader sees, so a log line or a quoted message would read differently from what the model got
  ("Trojan Source", CVE-2021-42574). The platforms set the direction of a message themselves;
* the invisible marks that spell nothing, so that two messages that look the same are the same (a
  ``/forget`` with a zero-width space in it is still ``/forget``): the zero-width space (U+200B),
  the left-to-right and right-to-left marks (U+200E, U+200F: direction again) and the byte order
  mark (U+FEFF, an artefact of a file's encoding).

How answers are rendered and split for a platform is the adapters' business (:mod:`adapters.kit.text`,
:mod:`adapters.slack.mrkdwn`).
"""

from __future__ import annotations

import unicodedata
from itertools import chain

_UNSAFE = frozenset(
    chr(code) for code in chain(range(0x202A, 0x202F), range(0x2066, 0x206A), (0x200B, 0x200E, 0x200F, 0xFEFF))
)
"""The format characters that go (see the module docstring); every other one, the joiners first, stays."""


def _keep(char: str) -> bool:
    if char in "\n\t":
        return True
    return char not in _UNSAFE and unicodedata.category(char) not in ("Cc", "Cs")


def clean_input(text: str) -> str:
    """Normalise what a user typed; never raises.

    Characters are dropped *before* NFC so that a removed mark cannot leave a decomposed pair behind,
    which keeps the function idempotent.
    """
    unified = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(char for char in unified if _keep(char))
    return unicodedata.normalize("NFC", kept).strip()
