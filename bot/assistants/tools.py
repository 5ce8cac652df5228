"""Tools on the Conversations backend: what a profile's tools look like on the wire, what the user
sees while they run, where the sources go, and what happens when one fails.

One :class:`ToolRun` per turn:

* **params**: the profile's tools as the Responses API takes them (:func:`tool_param`). MCP tools named in
  ``allowed_tools`` run without asking (``require_approval: {never: ...}``); any other tool of the server
  needs approval: the turn's :data:`~bot.domain.Approve` callback asks the asker (a button, see
  :mod:`bot.core.approvals`) while the status says "waiting for your approval…", and the follow-up
  request carries ``mcp_approval_response`` with their decision. Without a callback, or with no decision
  in time, the call is *declined* (``approve: false``): nothing that changes anything runs behind the
  user's back, and the model is told.
* **status**: tool events of the stream (``response.web_search_call.in_progress``,
  ``response.mcp_call.in_progress``...) become one short line for the adapters ("searching the web…").
* **sources**: ``url_citation`` annotations are appended to the answer as Markdown links, which each
  platform renders its own way (Slack's mrkdwn, Discord's Markdown).
* **failures**: a tool that fails before the answer (an MCP server that is down: HTTP 424) is dropped and
  the request sent again without it; a failure during the stream is left to the model, which answers
  without it; a response that then fails is sent again without tools. One WARNING each, never a dead
  conversation. A server that refuses ``tools`` altogether is learned by
  :class:`~bot.assistants.server.ServerMemory` like any optional parameter.

Every call is counted as ``(tool, outcome)`` in :attr:`Sent.tool_calls` (the core turns it into
``threadkeeper_tool_calls_total``): ``completed``/``failed``, and for approvals ``approved``/``declined``/``expired``
(``failed`` too: the prompt could not be shown, or Redis could not keep the decision).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import openai

from bot.assistants.base import Sent
from bot.assistants.errors import broken, error_text, is_tool_failure
from bot.assistants.server import ServerMemory
from bot.domain import ApprovalDecision, Approve, StatusCallback, ToolApproval, Usage
from bot.errors import Unavailable
from bot.profiles import HostedTool, McpServer, Profile, Tool

log = logging.getLogger("threadkeeper.assistant")

MAX_APPROVAL_ROUNDS = 3
"""Follow-up requests that answer approval requests, per turn (then the answer is what it is)."""
WAITING = "waiting for your approval…"
REASONS = {
    "declined": "The user did not approve this tool call; it was not run.",
    "expired": "The user did not answer the approval request in time; this tool call was not run.",
    "unasked": "This tool call needs the user's approval, which cannot be asked for here; it was not run.",
    "failed": "The user's approval could not be asked for or recorded just now; this tool call was not run.",
}
"""What the model is told (``mcp_approval_response.reason``) when a call does not run."""
MAX_SOURCES = 8

STATUS: dict[str, str] = {
    "response.web_search_call.in_progress": "searching the web…",
    "response.web_search_call.searching": "searching the web…",
    "response.file_search_call.in_progress": "searching the files…",
    "response.file_search_call.searching": "searching the files…",
    "response.mcp_list_tools.in_progress": "connecting to {label}…",
    "response.mcp_call.in_progress": "using {label}…",
    "response.code_interpreter_call.in_progress": "running code…",
}
"""Stream event -> the status line the user sees; ``{label}`` is the MCP server (and tool)."""

ITEM_TOOLS = {"web_search_call": "web_search", "file_search_call": "file_search"}


def tool_param(tool: Tool) -> dict[str, Any]:
    """One profile tool as the Responses API takes it."""
    if isinstance(tool, HostedTool):
        if tool.type == "file_search":
            return {"type": "file_search", "vector_store_ids": list(tool.vector_store_ids)}
        return {"type": tool.type}
    param: dict[str, Any] = {"type": "mcp", "server_label": tool.server_label, "server_url": tool.server_url,
                             "require_approval": "always"}
    if tool.allowed_tools:
        param["require_approval"] = {"never": {"tool_names": list(tool.allowed_tools)}}
    if tool.headers:
        param["headers"] = dict(tool.headers)
    return param


def _link(title: str, url: str) -> str:
    title = re.sub(r"[\[\]\n]", " ", title).strip() or url
    url = url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    return f"[{title}]({url})"


def with_sources(text: str, sources: dict[str, str]) -> str:
    """The answer, then its sources as a numbered list of Markdown links (each URL once)."""
    if not sources:
        return text
    lines = [f"{n}. {_link(title, url)}" for n, (url, title) in enumerate(list(sources.items())[:MAX_SOURCES], 1)]
    return text.rstrip() + "\n\nSources:\n" + "\n".join(lines)


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class ToolRun:
    """The tools of one turn: what is sent, seen and counted."""

    def __init__(self, profile: Profile, on_status: StatusCallback | None = None,
                 approve: Approve | None = None) -> None:
        self.profile = profile
        self.tools: list[Tool] = list(profile.tools)
        self.on_status = on_status
        self.approve = approve
        self.sources: dict[str, str] = {}
        self.tool_calls: list[tuple[str, str]] = []
        self._items: dict[str, tuple[str, str]] = {}
        """Output item id -> (tool label, status label) of tool items seen in the stream."""
        self._counted: set[str] = set()
        self._approvals: list[tuple[str, str, ToolApproval]] = []
        """Approval requests seen since the last call: (item id, tool label, what the prompt names)."""
        self._shown = ""
        self.failed_in_stream = False

    # -- what is sent ----------------------------------------------------------------------------
    def apply(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with the tools still in play (none: no ``tools`` key at all)."""
        params = {k: v for k, v in params.items() if k != "tools"}
        if self.tools:
            params["tools"] = [tool_param(t) for t in self.tools]
        return params

    async def call(self, server: ServerMemory, fn: Callable[..., Awaitable[Any]], params: dict[str, Any]) -> Any:
        """``server.call`` with the tools in play; a tool failure drops the tools at fault and sends again."""
        while True:
            try:
                return await server.call("responses", fn, self.apply(params))
            except openai.APIStatusError as exc:
                if not self.tools or not is_tool_failure(exc):
                    raise
                self._drop(exc)

    def _drop(self, exc: openai.APIStatusError) -> None:
        text = error_text(exc)
        named: list[Tool] = [t for t in self.tools if isinstance(t, McpServer) and t.server_label.lower() in text]
        at_fault = named or list(self.tools)
        for tool in at_fault:
            self.tools.remove(tool)
            self.tool_calls.append((tool.label, "failed"))
        log.warning("tool %s failed before the answer (HTTP %s: %s); answering without it",
                    ", ".join(t.label for t in at_fault), exc.status_code, exc.message[:200])

    def drop_all(self, why: str) -> bool:
        """After a response that failed once a tool had failed: the next try goes without tools."""
        if not self.tools or not self.failed_in_stream:
            return False
        log.warning("the answer failed after a tool failed (%s); answering again without tools", why)
        self.tools.clear()
        self.failed_in_stream = False
        return True

    # -- what is seen ----------------------------------------------------------------------------
    async def see(self, event: Any) -> None:
        """One stream event that is not the answer's text."""
        kind = str(_get(event, "type") or "")
        if kind in ("response.output_item.added", "response.output_item.done"):
            self._item(_get(event, "item"), done=kind.endswith("done"))
        elif kind == "response.output_text.annotation.added":
            self._annotation(_get(event, "annotation"))
        elif kind in ("response.mcp_call.failed", "response.mcp_list_tools.failed"):
            label = self._items.get(str(_get(event, "item_id")), ("mcp", ""))[0]
            self.failed_in_stream = True
            log.warning("tool %s failed during the answer; the model goes on without it", label)
        if kind in STATUS:
            label = self._items.get(str(_get(event, "item_id")), ("", "the tools"))[1]
            await self._status(STATUS[kind].format(label=label))

    def see_response(self, response: Any) -> None:
        """A whole response (not streamed, or the final one of a stream): items, sources, approvals."""
        for item in _get(response, "output") or []:
            self._item(item, done=True)

    def _item(self, item: Any, *, done: bool) -> None:
        kind, item_id = str(_get(item, "type") or ""), str(_get(item, "id") or "")
        server = str(_get(item, "server_label") or "")
        if kind in ITEM_TOOLS:
            tool, shown = ITEM_TOOLS[kind], ""
        elif kind in ("mcp_call", "mcp_list_tools", "mcp_approval_request"):
            tool, name = f"mcp:{server}", str(_get(item, "name") or "")
            shown = f"{server} ({name})" if name else server
        elif kind == "message" and done:
            for part in _get(item, "content") or []:
                for annotation in _get(part, "annotations") or []:
                    self._annotation(annotation)
            return
        else:
            return
        self._items[item_id] = (tool, shown or tool)
        if not done or item_id in self._counted:
            return
        self._counted.add(item_id)
        if kind == "mcp_approval_request":
            request = ToolApproval(server, str(_get(item, "name") or ""), str(_get(item, "arguments") or ""))
            self._approvals.append((item_id, tool, request))
        elif kind != "mcp_list_tools" or _get(item, "error"):
            failed = bool(_get(item, "error")) or _get(item, "status") in ("failed", "incomplete")
            self.tool_calls.append((tool, "failed" if failed else "completed"))

    def _annotation(self, annotation: Any) -> None:
        if _get(annotation, "type") != "url_citation":
            return
        url = str(_get(annotation, "url") or "")
        if url.startswith(("https://", "http://")) and url not in self.sources:
            self.sources[url] = str(_get(annotation, "title") or url)

    async def _status(self, status: str) -> None:
        if self.on_status is None or status == self._shown:
            return
        self._shown = status
        await self.on_status(status)

    # -- approvals and the end ---------------------------------------------------------------------
    async def answers(self) -> list[dict[str, Any]]:
        """Input items answering the approval requests seen since the last call, decided by the asker (all
        prompts at once, so a turn waits one timeout per round) or declined where nobody can be asked; the
        requests are forgotten."""
        pending, self._approvals = self._approvals, []
        if not pending:
            return []
        if self.approve is None:
            for _, _, request in pending:
                log.info("declined %s on MCP server %s: it needs an approval nobody can give here",
                         request.tool, request.server)
            decisions: list[ApprovalDecision] = ["declined"] * len(pending)
        else:
            await self._status(WAITING)
            decisions = list(await asyncio.gather(*(self.approve(request) for _, _, request in pending)))
        items: list[dict[str, Any]] = []
        for (item_id, tool, _), decision in zip(pending, decisions, strict=True):
            self.tool_calls.append((tool, decision))
            reason = REASONS["unasked"] if self.approve is None else REASONS.get(decision, "")
            item = {"type": "mcp_approval_response", "approval_request_id": item_id, "approve": decision == "approved"}
            items.append({**item, "reason": reason} if reason else item)
        return items

    @property
    def waiting(self) -> bool:
        """Approval requests are pending: an answer without text is not finished yet."""
        return bool(self._approvals)

    async def respond(self, params: dict[str, Any], once: Callable[[dict[str, Any]], Awaitable[Sent]]) -> Sent:
        """``once(params)``, then follow-ups that answer approval requests; the texts joined, sources appended."""
        texts: list[str] = []
        usage = Usage()
        items: list[str] = []
        for round_ in range(MAX_APPROVAL_ROUNDS + 1):
            try:
                sent = await once(params)
            except Unavailable as exc:
                if not self.drop_all(str(exc)):
                    raise
                continue
            texts.append(sent.text)
            items += sent.items
            usage = Usage(usage.input_tokens + sent.usage.input_tokens, usage.output_tokens + sent.usage.output_tokens,
                          usage.cached_tokens + sent.usage.cached_tokens)
            if not self.waiting or round_ == MAX_APPROVAL_ROUNDS:
                break
            params = {**params, "input": await self.answers()}
        said = [t for t in texts if t.strip()]
        text = said[0] if len(said) == 1 else "\n\n".join(t.strip() for t in said)  # one answer: as it came
        if not text:
            raise broken("sending a message", "an empty answer (after the tools)")
        return dataclasses.replace(Sent(with_sources(text, self.sources), usage, items=tuple(items)),
                                   tool_calls=list(self.tool_calls))
