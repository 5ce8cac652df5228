"""Helpers shared by tests (items_text)."""

from __future__ import annotations

from tests.fakes.openai_server import FakeOpenAI


def items_text(fake: FakeOpenAI, conv_id: str) -> list[tuple[str, str]]:
    """(role, text) of every message item in a conversation on the fake."""
    out = []
    for item in fake.conversations[conv_id].items:
        content = item.get("content")
        if isinstance(content, list):
            text = "".join(part.get("text", "") for part in content)
        else:
            text = str(content)
        out.append((item.get("role", ""), text))
    return out
