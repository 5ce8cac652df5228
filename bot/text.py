"""Input cleaning for every message the core receives: pure functions, no I/O.

How answers are rendered and split for a platform is the adapters' business (:mod:`adapters.kit.text`,
:mod:`adapters.slack.mrkdwn`).
"""

from __future__ import annotations

import unicodedata
from itertools import chain

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
