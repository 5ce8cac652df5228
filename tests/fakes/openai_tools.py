"""Hosted tools and moderation, for the loopback fake of the OpenAI API (mixed into ``FakeOpenAI``).

Tools: a ``/v1/responses`` request that carries ``tools`` uses each of them once before it answers, and
streams what api.openai.com streams for them: ``web_search_call`` items with
``response.web_search_call.in_progress/searching/completed`` and ``url_citation`` annotations on the
answer (:attr:`ToolsApi.web_sources`); ``file_search_call`` items; for an MCP server
``mcp_list_tools`` then an ``mcp_call`` of :attr:`ToolsApi.mcp_tool` (default: the first tool the request
lets run without approval), or an ``mcp_approval_request`` (with :attr:`ToolsApi.mcp_arguments`) and no
answer when that tool needs approval. A follow-up whose input declines (``mcp_approval_response``) gets
:data:`DECLINED_REPLY`; one that approves gets the ``mcp_call`` of the approved request, then the answer.

Switches (all off by default):

* ``mcp_failure = "list"``: a request with an MCP tool answers OpenAI's HTTP 424
  ``external_connector_error`` naming the server, before anything is stored;
  ``"call"``: the call fails in the stream (``response.mcp_call.failed``, an item with ``error``) and the
  model answers anyway.
* ``moderation_api = False``: ``POST /v1/moderations`` answers 404 (servers without the endpoint).
* ``tool_gate``: an :class:`asyncio.Event`; streams hold after each tool's ``*_call.in_progress`` event
  until it is set.

Moderation flags any input containing :attr:`ToolsApi.flagged_word` (category ``violence``); every
input is recorded in ``moderated``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .openai_faults import route_not_found
from .openai_state import JSON, ApiError, new_id, output_message

DECLINED_REPLY = "I did not run that tool: it needs your approval first."
CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
              "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
              "violence/graphic")


@dataclass
class ToolPlan:
    """What the tools did in one turn: output items before the answer, their stream events, citations."""

    items: list[JSON] = field(default_factory=list)
    events: list[JSON] = field(default_factory=list)
    sources: list[tuple[str, str]] = field(default_factory=list)
    reply: str | None = None
    """Replaces the answer's text (a declined approval); ``""``: no answer at all (approval pending)."""

    def add(self, item: JSON, *kinds: str) -> None:
        index = len(self.items)
        in_progress = {**item, "status": "in_progress"} if "status" in item else item
        self.events.append({"type": "response.output_item.added", "output_index": index, "item": in_progress})
        self.events += [{"type": k, "item_id": item["id"], "output_index": index} for k in kinds]
        self.events.append({"type": "response.output_item.done", "output_index": index, "item": item})
        self.items.append(item)

    def message(self, msg_id: str, text: str) -> JSON:
        message = output_message(msg_id, text)
        if message["content"]:
            message["content"][0]["annotations"] = self.annotations(text)
        return message

    def annotations(self, text: str) -> list[JSON]:
        return [{"type": "url_citation", "url": url, "title": title, "start_index": 0, "end_index": len(text)}
                for url, title in self.sources]

    def stream(self, created: JSON, final: JSON, msg_id: str, text: str) -> list[JSON]:
        """The whole stream: the tools' events, then the answer (if any) at the next output index."""
        events: list[JSON] = [{"type": "response.created", "response": created},
                              {"type": "response.in_progress", "response": created}, *self.events]
        if self.reply != "":
            index = len(self.items)
            loc: JSON = {"item_id": msg_id, "output_index": index, "content_index": 0}
            part: JSON = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events += [
                {"type": "response.output_item.added", "output_index": index,
                 "item": output_message(msg_id, "", "in_progress")},
                {"type": "response.content_part.added", **loc, "part": part},
                {"type": "response.output_text.delta", **loc, "delta": text, "logprobs": []},
                *({"type": "response.output_text.annotation.added", **loc, "annotation_index": n, "annotation": a}
                  for n, a in enumerate(self.annotations(text))),
                {"type": "response.output_text.done", **loc, "text": text, "logprobs": []},
                {"type": "response.output_item.done", "output_index": index, "item": final["output"][-1]},
            ]
        events.append({"type": "response.completed", "response": final})
        return [{**e, "sequence_number": n} for n, e in enumerate(events)]


def _never(tool: JSON) -> list[str]:
    approval = tool.get("require_approval")
    if isinstance(approval, dict):
        return list((approval.get("never") or {}).get("tool_names") or [])
    return []


class ToolsApi:
    """Tools and moderation; ``FakeOpenAI`` calls :meth:`_init_tools` and :meth:`add_tool_routes`."""

    def _init_tools(self) -> None:
        self.web_sources: list[tuple[str, str]] = [("https://docs.example.test/answer", "The answer, documented")]
        self.mcp_tool: str | None = None
        self.mcp_failure: str | None = None
        self.mcp_arguments = "{}"
        self.approval_requests: dict[str, JSON] = {}
        """Every ``mcp_approval_request`` sent, by id."""
        self.moderation_api = True
        self.flagged_word = "forbidden-fruit"
        self.moderated: list[str] = []
        self.tool_gate: asyncio.Event | None = None

    def add_tool_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/moderations", self._moderate)

    async def _after_event(self, event: JSON) -> None:
        """With ``tool_gate``, a stream holds after each tool's ``in_progress`` event until the test opens it
        (what the user sees while a tool runs can then be checked without guessing at timing)."""
        if self.tool_gate is not None and str(event.get("type", "")).endswith("_call.in_progress"):
            await self.tool_gate.wait()

    # ---- tools -------------------------------------------------------------------------------------
    def _use_tools(self, body: JSON, new_items: list[JSON]) -> ToolPlan:
        """Run the request's tools (or decline, or fail) before the model answers."""
        plan = ToolPlan()
        declined = [i for i in new_items if i.get("type") == "mcp_approval_response" and not i.get("approve")]
        if declined:
            plan.reply = DECLINED_REPLY
            return plan
        approved = [i for i in new_items if i.get("type") == "mcp_approval_response" and i.get("approve")]
        for answer in approved:
            request = self.approval_requests[str(answer.get("approval_request_id"))]
            plan.add({"type": "mcp_call", "id": new_id("mcp"), "server_label": request["server_label"],
                      "name": request["name"], "arguments": request["arguments"], "output": "done", "error": None,
                      "status": "completed", "approval_request_id": request["id"]},
                     "response.mcp_call.in_progress", "response.mcp_call.completed")
        if approved:
            return plan
        for tool in body.get("tools") or []:
            kind = tool.get("type")
            if kind == "web_search":
                plan.add({"type": "web_search_call", "id": new_id("ws"), "status": "completed",
                          "action": {"type": "search", "query": "the question"}},
                         "response.web_search_call.in_progress", "response.web_search_call.searching",
                         "response.web_search_call.completed")
                plan.sources += self.web_sources
            elif kind == "file_search":
                plan.add({"type": "file_search_call", "id": new_id("fs"), "status": "completed", "queries": ["q"]},
                         "response.file_search_call.in_progress", "response.file_search_call.searching",
                         "response.file_search_call.completed")
            elif kind == "mcp":
                self._mcp(tool, plan)
        return plan

    def _mcp(self, tool: JSON, plan: ToolPlan) -> None:
        label = str(tool.get("server_label"))
        if self.mcp_failure == "list":
            raise ApiError(424, f"Error retrieving tool list from MCP server: '{label}'. Http status code: 424 "
                           "(Failed Dependency)", type="external_connector_error", param="tools", code="http_error")
        never = _never(tool)
        name = self.mcp_tool or (never[0] if never else "search_docs")
        plan.add({"type": "mcp_list_tools", "id": new_id("mcpl"), "server_label": label,
                  "tools": [{"name": name, "input_schema": {"type": "object"}}]},
                 "response.mcp_list_tools.in_progress", "response.mcp_list_tools.completed")
        if name not in never:
            request = {"type": "mcp_approval_request", "id": new_id("mcpr"), "server_label": label, "name": name,
                       "arguments": self.mcp_arguments}
            self.approval_requests[request["id"]] = request
            plan.add(request)
            plan.reply = ""
            return
        failed = self.mcp_failure == "call"
        plan.add({"type": "mcp_call", "id": new_id("mcp"), "server_label": label, "name": name, "arguments": "{}",
                  "output": None if failed else "found it", "error": "the server is down" if failed else None,
                  "status": "failed" if failed else "completed"},
                 "response.mcp_call.in_progress", f"response.mcp_call.{'failed' if failed else 'completed'}")

    # ---- moderation --------------------------------------------------------------------------------
    async def _moderate(self, request: web.Request) -> web.Response:
        if not self.moderation_api:
            raise route_not_found()
        body: Any = await request.json()
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else [str(t.get("text", t)) if isinstance(t, dict) else str(t)
                                                    for t in raw or []]
        self.moderated += texts
        results = []
        for text in texts:
            flagged = self.flagged_word in text
            categories = {c: flagged and c == "violence" for c in CATEGORIES}
            results.append({"flagged": flagged, "categories": categories,
                            "category_scores": {c: 0.9 if on else 0.01 for c, on in categories.items()},
                            "category_applied_input_types": {c: ["text"] for c in CATEGORIES}})
        return web.json_response({"id": new_id("modr"), "model": body.get("model"), "results": results})
