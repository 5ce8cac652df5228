"""Files served by the loopback fakes: Slack's private downloads, Discord's CDN, and a foreign host.

* :class:`SlackFileHost` (``FakeSlack.files``): ``url_private_download`` answers only with the bot token as
  a Bearer header and, like Slack, redirects once to a second Slack path that wants the token too (or,
  for a test, to a foreign host);
* :class:`DiscordCdn` (``FakeDiscord.cdn``): attachments on a loopback CDN path, no token;
* :class:`ForeignHost`: a server of its own (another port: another origin) standing for any host that is
  not the platform's. It records every request's headers, so a test can show it never saw a token.

Bodies can be streamed without a ``Content-Length`` (``chunked=True``), so only the reader's own cap
stops a large one; :attr:`Hosted.sent` and :attr:`Hosted.complete` say how far the download went.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

JSON = dict[str, Any]
CHUNK = 256 * 1024
_ids = itertools.count(1)


@dataclass
class Hosted:
    name: str
    data: bytes
    status: int = 200
    chunked: bool = False
    redirect: str | None = None
    sent: int = 0
    """Bytes written to the client so far (its cap may end the download early)."""
    complete: bool = False
    requests: int = 0


@dataclass
class Seen:
    """One request for a file: its path and the ``Authorization`` header it carried (None: none)."""

    path: str
    authorization: str | None
    headers: dict[str, str] = field(default_factory=dict)


async def serve(request: web.Request, hosted: Hosted) -> web.StreamResponse:
    hosted.requests += 1
    if hosted.status != 200:
        return web.Response(status=hosted.status, text="Not Found" if hosted.status == 404 else "error")
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    if not hosted.chunked:
        response.content_length = len(hosted.data)
    await response.prepare(request)
    try:
        for start in range(0, len(hosted.data), CHUNK):
            piece = hosted.data[start : start + CHUNK]
            await response.write(piece)
            hosted.sent += len(piece)
        await response.write_eof()
        hosted.complete = True
    except (ConnectionError, RuntimeError):
        pass  # the client stopped reading (its cap): that is the point of some tests
    return response


def _seen(request: web.Request) -> Seen:
    return Seen(request.path, request.headers.get("Authorization"), dict(request.headers))


class SlackFileHost:
    """``/files-pri/{id}/download/{name}`` -> 302 -> ``/files-tmb/{id}/{name}``; both want the bot token."""

    def __init__(self, base: Callable[[], str], *, token: str = "xoxb-test", team: str = "T0TEAM") -> None:
        self._base = base
        self.token = token
        self.team = team
        self.hosted: dict[str, Hosted] = {}
        self.seen: list[Seen] = []
        self.refused = 0
        """Requests answered 403 for a missing or wrong token."""

    def install(self, router: web.UrlDispatcher) -> None:
        router.add_get("/files-pri/{fid}/download/{name}", self._download)
        router.add_get("/files-tmb/{fid}/{name}", self._second)

    def host(self, name: str, data: bytes, *, mimetype: str = "application/octet-stream", size: int | None = None,
             status: int = 200, chunked: bool = False, redirect: str | None = "slack") -> JSON:
        """A Slack file object for an event's ``files``; ``size`` is what it claims (default: the truth).

        ``redirect``: ``"slack"`` (the download redirects once to a second Slack path, as Slack does),
        ``None`` (served at once) or an absolute URL (a redirect to that host).
        """
        fid = f"F{next(_ids):08d}"
        self.hosted[fid] = Hosted(name, data, status, chunked, redirect)
        base = f"{self._base()}/files-pri/{self.team}-{fid}"
        return {"id": fid, "created": 1710000000, "timestamp": 1710000000, "name": name, "title": name,
                "mimetype": mimetype, "filetype": name.rpartition(".")[2] or "binary", "pretty_type": "File",
                "user": "U1USER", "user_team": self.team, "editable": False, "size": len(data) if size is None
                else size, "mode": "hosted", "is_external": False, "external_type": "", "is_public": False,
                "public_url_shared": False, "display_as_bot": False, "username": "",
                "url_private": f"{base}/{name}", "url_private_download": f"{base}/download/{name}",
                "permalink": f"https://fake.slack.test/files/U1USER/{fid}/{name}", "is_starred": False,
                "has_rich_preview": False, "file_access": "visible"}

    def requests_for(self, fid: str) -> list[Seen]:
        return [s for s in self.seen if f"/{fid}/" in s.path or f"-{fid}/" in s.path]

    def _file(self, request: web.Request) -> Hosted | None:
        fid = request.match_info["fid"].rpartition("-")[2]
        return self.hosted.get(fid)

    def _authorised(self, request: web.Request) -> bool:
        ok = request.headers.get("Authorization") == f"Bearer {self.token}"
        self.refused += 0 if ok else 1
        return ok

    async def _download(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(_seen(request))
        hosted = self._file(request)
        if hosted is None:
            return web.Response(status=404)
        if not self._authorised(request):
            return web.Response(status=403, text="not allowed")
        if hosted.status == 200 and hosted.redirect == "slack":
            fid = request.match_info["fid"].rpartition("-")[2]
            raise web.HTTPFound(f"/files-tmb/{self.team}-{fid}/{request.match_info['name']}")
        if hosted.status == 200 and hosted.redirect:
            raise web.HTTPFound(hosted.redirect)
        return await serve(request, hosted)

    async def _second(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(_seen(request))
        hosted = self._file(request)
        if hosted is None:
            return web.Response(status=404)
        if not self._authorised(request):
            return web.Response(status=403, text="not allowed")
        return await serve(request, hosted)


class DiscordCdn:
    """Attachments at ``/attachments/{channel}/{id}/{name}`` on the fake Discord's own server (no token)."""

    def __init__(self, base: Callable[[], str]) -> None:
        self._base = base
        self.hosted: dict[str, Hosted] = {}
        self.seen: list[Seen] = []

    def install(self, router: web.UrlDispatcher) -> None:
        router.add_get("/attachments/{cid}/{aid}/{name}", self._get)

    def host(self, name: str, data: bytes, *, channel_id: str = "1", content_type: str | None = None,
             size: int | None = None, status: int = 200, chunked: bool = False) -> JSON:
        """An attachment object for a message's ``attachments`` (``size``: what it claims)."""
        aid = str(1_200_000_000_000_000_000 + next(_ids))
        self.hosted[aid] = Hosted(name, data, status, chunked)
        url = f"{self._base()}/attachments/{channel_id}/{aid}/{name}?ex=6700000&is=6600000&hm=abcdef"
        attachment: JSON = {"id": aid, "filename": name, "size": len(data) if size is None else size, "url": url,
                            "proxy_url": url, "flags": 0}
        if content_type:
            attachment["content_type"] = content_type
        return attachment

    async def _get(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(_seen(request))
        hosted = self.hosted.get(request.match_info["aid"])
        if hosted is None:
            return web.Response(status=404)
        return await serve(request, hosted)


class ForeignHost:
    """A server that is not the platform's: records what it was sent, serves what it is given."""

    def __init__(self) -> None:
        self.hosted: dict[str, Hosted] = {}
        self.seen: list[Seen] = []
        self._runner: web.AppRunner | None = None
        self.base = ""

    def host(self, name: str, data: bytes) -> str:
        self.hosted[name] = Hosted(name, data)
        return f"{self.base}/f/{name}"

    async def _get(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(_seen(request))
        hosted = self.hosted.get(request.match_info["name"])
        return await serve(request, hosted) if hosted else web.Response(status=404)

    async def __aenter__(self) -> ForeignHost:
        app = web.Application()
        app.router.add_get("/f/{name}", self._get)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
