"""The moderation endpoint (``client.moderations.create``), for :mod:`bot.safety`.

:class:`Moderator` is the safety layer's ``moderate`` callable: the categories a text is flagged for, or
an empty list. A failure is translated like any assistant error (the user gets its sentence), so a
message is never let through unchecked. :func:`probe` tells whether a server has the endpoint at all
(``doctor`` and the start-up check).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import openai
from openai import AsyncOpenAI

from bot.assistants.conversations import make_client
from bot.assistants.errors import BROKEN_BODY, broken, describe_broken, translate
from bot.config import Settings

log = logging.getLogger("threadkeeper.assistant")

Probe = Literal["ok", "missing"]


def flagged_categories(response: Any) -> list[str]:
    """The categories flagged in any result (``"unspecified"`` for a flag without categories)."""
    found: set[str] = set()
    for result in getattr(response, "results", None) or []:
        if not getattr(result, "flagged", False):
            continue
        categories: Any = getattr(result, "categories", None)
        raw = categories.model_dump(by_alias=True) if hasattr(categories, "model_dump") else dict(categories or {})
        names = {str(name) for name, on in raw.items() if on is True}
        found |= names or {"unspecified"}
    return sorted(found)


class Moderator:
    """``await moderator(text)`` -> the flagged categories (empty: nothing flagged)."""

    def __init__(self, settings: Settings, client: AsyncOpenAI | None = None) -> None:
        self.client = client or make_client(settings)
        self.model = settings.moderation_model

    async def __call__(self, text: str) -> list[str]:
        what = "moderating a message"
        try:
            response = await self.client.moderations.create(model=self.model, input=text)
        except openai.APIError as exc:
            raise translate(exc, what=what) from None
        except BROKEN_BODY as exc:
            raise broken(what, describe_broken(exc)) from None
        return flagged_categories(response)

    async def close(self) -> None:
        await self.client.close()


async def probe(client: AsyncOpenAI, model: str) -> Probe:
    """Does the server have a moderation endpoint? ``missing`` for a 404/405/501; other errors
    (connection, auth) propagate for the caller to word."""
    try:
        await client.moderations.create(model=model, input="hello")
    except openai.APIStatusError as exc:
        if exc.status_code in (404, 405, 501):
            return "missing"
        raise
    return "ok"
