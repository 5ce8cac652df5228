"""What we learn about the assistant server, shared by every worker: refused parameters, context size.

Real servers differ from api.openai.com: some refuse optional request parameters (not always with a
400: a gateway answered 500 with a FastAPI ``detail`` to every request carrying ``truncation``), some
have a context window far below ``CONTEXT_BUDGET``. :class:`ServerMemory` learns each fact once,
keeps it for the server (base URL) and model in the :class:`Notes` port (the store's ``ServerNotes``:
one Redis hash, kept about a day), reads that once per process and refreshes it every
:data:`NOTES_REFRESH` seconds. A notes failure never fails a message: the memory then lives in
this process only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import openai

from bot.assistants.errors import is_unknown_model, refused_params, translate, unknown_model

log = logging.getLogger("threadkeeper.assistant")

OPTIONAL_PARAMS = frozenset(
    {"truncation", "prompt_cache_key", "context_management", "safety_identifier", "metadata", "store",
     "stream_options", "tools", "temperature"}
)
"""Request parameters a request can do without. Everything else (model, input, conversation,
messages, instructions, stream) is never dropped."""
NOTES_REFRESH = 60.0
"""Seconds between reads of the shared notes (other workers' discoveries arrive within this)."""
CONTEXT_FIELD = "context"
"""Notes field: the chat backend's learned context size for this server and model, in our tokens."""
NO_INPUT_FIELD = "no-input:"
"""Notes fields ``no-input:image``, ``no-input:pdf``: a kind of input this server and model refused."""


class Notes(Protocol):
    """Facts about one server and model, shared by every worker (the store's ``ServerNotes``).

    ``server`` is an opaque name (base URL and model); fields and values are short strings.
    """

    async def read(self, server: str) -> dict[str, str]:
        """Every field still valid (not expired)."""
        ...

    async def write(self, server: str, field: str, value: str, *, replace: bool = False) -> bool:
        """Set ``field``; True if it was new (or expired, or ``replace`` and different), False if known."""
        ...


def redact(url: str) -> str:
    """A base URL fit for logs: no credentials, no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _refused_field(endpoint: str, param: str) -> str:
    return f"refused:{endpoint}:{param}"


class ServerMemory:
    """Refused parameters and the context size of one server and model, learned once and shared."""

    def __init__(self, base_url: str, model: str, notes: Notes | None = None, *,
                 refresh: float = NOTES_REFRESH) -> None:
        self.base_url = redact(base_url)
        self.model = model
        self.server = f"{base_url.rstrip('/')}|{model}"
        self.notes = notes
        self.refresh = refresh
        self._fields: dict[str, str] = {}
        """What this process knows: the shared notes as last read, plus :attr:`_unshared`."""
        self._unshared: dict[str, str] = {}
        """Facts learned here that the shared notes could not take (kept until the process ends)."""
        self._loaded = float("-inf")

    # -- reading -------------------------------------------------------------------------------
    async def load(self, *, force: bool = False) -> None:
        """Read the shared notes once per process, then every ``refresh`` seconds."""
        if self.notes is None or (not force and time.monotonic() - self._loaded < self.refresh):
            return
        self._loaded = time.monotonic()
        try:
            shared = await self.notes.read(self.server)
        except Exception as exc:  # the notes are an optimisation: never fail a message on them
            log.warning("cannot read the shared server notes (%s); using what this process knows", exc)
            return
        self._fields = {**shared, **self._unshared}  # an expired fact is forgotten here too

    def supported(self, endpoint: str, param: str) -> bool:
        return _refused_field(endpoint, param) not in self._fields

    def refused(self) -> list[str]:
        """Refused parameters as ``endpoint:param``, sorted."""
        return sorted(f[len("refused:"):] for f in self._fields if f.startswith("refused:"))

    def accepts(self, kind: str) -> bool:
        """False once the server refused input of this kind (``image``, ``pdf``) for this model."""
        return NO_INPUT_FIELD + kind not in self._fields

    @property
    def context_size(self) -> int | None:
        try:
            size = int(self._fields.get(CONTEXT_FIELD, ""))
        except ValueError:
            return None
        return size if size > 0 else None

    # -- learning ------------------------------------------------------------------------------
    async def _write(self, field: str, value: str, *, replace: bool = False) -> bool:
        """Remember locally and in the shared notes; True if no worker knew it yet."""
        known = self._fields.get(field) == value
        self._fields[field] = value
        if self.notes is None:
            return not known
        try:
            return await self.notes.write(self.server, field, value, replace=replace)
        except Exception as exc:
            log.warning("cannot write the shared server notes (%s); only this process remembers", exc)
            self._unshared[field] = value
            return not known

    async def refuse(self, endpoint: str, params: list[str], status: int | None) -> None:
        for param in params:
            if await self._write(_refused_field(endpoint, param), str(status or "")):
                log.warning(
                    "the assistant server %s refused the optional parameter %r on %s for model %s (HTTP %s); "
                    "not sending it any more", self.base_url, param, endpoint, self.model, status,
                )

    async def refuse_input(self, kind: str, status: int | None) -> None:
        """The server refused ``kind`` input (an image, a PDF) for this model: do not send it any more."""
        if await self._write(NO_INPUT_FIELD + kind, str(status or "")):
            log.warning("the assistant server %s refused %s input for model %s (HTTP %s); not sending it any more",
                        self.base_url, kind, self.model, status)

    async def learn_context(self, size: int) -> None:
        """A smaller context size for this server and model (never a larger one)."""
        current = self.context_size
        if current is not None and current <= size:
            return
        if await self._write(CONTEXT_FIELD, str(size), replace=True):
            log.warning("the assistant server %s has a context window of about %d tokens for model %s; "
                        "fitting the history to it", self.base_url, size, self.model)

    # -- calling ---------------------------------------------------------------------------------
    async def call(self, endpoint: str, fn: Callable[..., Awaitable[Any]], params: Mapping[str, Any]) -> Any:
        """``fn(**params)`` without the parameters this server refused; a new refusal is learned and the
        request sent again without it (once per parameter). Other errors propagate unchanged."""
        await self.load()
        while True:
            sent = {k: v for k, v in params.items() if k not in OPTIONAL_PARAMS or self.supported(endpoint, k)}
            try:
                return await fn(**sent)
            except openai.APIStatusError as exc:
                names = refused_params(exc, [k for k in sent if k in OPTIONAL_PARAMS])
                if not names:
                    raise
                await self.refuse(endpoint, names, exc.status_code)


async def check_model(client: openai.AsyncOpenAI, model: str) -> None:
    """Raise UnknownModel if the server does not know ``model``.

    ``models.retrieve`` first; when that 404s without OpenAI's ``model_not_found`` code (many compatible
    servers serve only the list route), ``models.list``. A server without a models endpoint, or with an
    empty list, counts as OK: it cannot tell, and blocking would be worse. Connection errors and the
    like raise their usual translation (Unavailable, Misconfigured).
    """
    what = "checking the model"
    try:
        await client.models.retrieve(model)
        return
    except openai.APIStatusError as exc:
        if is_unknown_model(exc):
            raise unknown_model(what, exc) from None
        if exc.status_code not in (400, 404, 405, 501):
            raise translate(exc, what=what) from None
    except openai.APIError as exc:
        raise translate(exc, what=what) from None
    try:
        listed = [m.id async for m in client.models.list()]
    except openai.APIStatusError as exc:
        if exc.status_code in (400, 404, 405, 501):
            return
        raise translate(exc, what=what) from None
    except openai.APIError as exc:
        raise translate(exc, what=what) from None
    if listed and model not in listed:
        raise unknown_model(what)
