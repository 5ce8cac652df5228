"""Token counting for the chat backend's context budget.

With ``tiktoken`` installed and its encoding available offline, counts are
exact for OpenAI models. Otherwise we use a documented, deliberately
pessimistic estimate: one token per 3 bytes of UTF-8 (English averages about
4 characters a token, so the estimate overcounts and the budget holds), plus
4 tokens of framing per message.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    return len(text.encode("utf-8")) // 3 + 1


@lru_cache(maxsize=4)
def counter_for(model: str) -> Callable[[str], int]:
    """The best text -> token count function available for ``model``."""
    try:
        import tiktoken

        try:
            encoding = tiktoken.encoding_for_model(model)
        except KeyError:
            encoding = tiktoken.get_encoding("o200k_base")
        encoding.encode("probe")
    except Exception:
        return estimate_tokens
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def message_tokens(text: str, count: Callable[[str], int]) -> int:
    return count(text) + MESSAGE_OVERHEAD
