"""Tool progress in a streamed Slack answer: ``task_update`` chunks ("searching the web…").

Each tool status opens a task; the next status, or the answer's next text, completes it. Pure
bookkeeping: :class:`~adapters.slack.reply.SlackReply` sends the chunks.
"""

from __future__ import annotations

from typing import Any


class Tasks:
    """The tasks of one streamed answer."""

    def __init__(self) -> None:
        self.count = 0
        """Tasks opened so far (each gets its own id)."""
        self.open = False
        """The last one is still in progress."""

    def _chunk(self, status: str, title: str = "") -> dict[str, str]:
        chunk = {"type": "task_update", "id": f"tk-tool-{self.count}", "status": status}
        return {**chunk, "title": title} if title else chunk

    def begin(self, title: str) -> list[dict[str, str]]:
        """Chunks that complete the task in progress, if any, and open one for ``title``."""
        done = [self._chunk("complete")] if self.open else []
        self.count += 1
        self.open = True
        return [*done, self._chunk("in_progress", title)]

    def text(self, text: str) -> dict[str, Any]:
        """Arguments of an append (or stop) that carries ``text``, completing the open task first; call
        :meth:`done` once Slack took them."""
        if not self.open:
            return {"markdown_text": text} if text else {}
        return {"chunks": [self._chunk("complete"), *([{"type": "markdown_text", "text": text}] if text else [])]}

    def done(self) -> None:
        self.open = False
