"""Files shared with a Slack message: which ones, and how they are fetched.

A DM, a mention or a follow-up carries ``files`` on its event (``file_share`` messages too). Each is
downloaded from ``url_private_download`` with the bot token as a Bearer header, which needs the
``files:read`` scope. Slack redirects downloads; the token goes again only to Slack's file hosts and
to ``SLACK_API_URL``'s host (GovSlack, a proxy, the tests' fake), never elsewhere
(:class:`~adapters.kit.files.FileFetcher` follows redirects by hand).

Files Slack does not hand out (deleted, hidden by the plan's limits, Slack Connect files that need
``files.info`` first) have no URL: the user is told they could not be downloaded.
"""

from __future__ import annotations

from typing import Any

from adapters.kit.files import FileFetcher, FileRef, Hosts
from bot.config import Settings

SLACK_FILE_HOSTS: tuple[str, ...] = ("files.slack.com", "files.slack-gov.com")
"""Where Slack (and GovSlack) serve ``url_private`` downloads."""


def file_refs(body: dict[str, Any]) -> tuple[FileRef, ...]:
    """The files of an Events API envelope's message, in the order they were shared."""
    event = body.get("event")
    files = event.get("files") if isinstance(event, dict) else None
    if not isinstance(files, list):
        return ()
    refs = []
    for file in files:
        if not isinstance(file, dict):
            continue
        name = str(file.get("name") or file.get("title") or "a file")
        url = file.get("url_private_download") or file.get("url_private") or ""
        size = file.get("size")
        refs.append(FileRef(name, str(url), size if isinstance(size, int) else None))
    return tuple(refs)


def slack_fetcher(settings: Settings, token: str) -> FileFetcher:
    hosts = Hosts.https(SLACK_FILE_HOSTS, settings.slack_api_url, token=True)
    return FileFetcher(hosts, token=token, max_bytes=settings.max_file_bytes,
                       max_files=settings.max_files_per_message, platform="Slack")
