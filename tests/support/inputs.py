"""What the model was sent: the ``input`` of every Responses request the fake OpenAI recorded."""

from __future__ import annotations

from tests.fakes.openai_server import FakeOpenAI


def inputs(fake: FakeOpenAI) -> list[str]:
    """The text of every turn the model was sent, in order."""
    found = []
    for request in fake.requests:
        if request.method == "POST" and request.path == "/v1/responses" and request.json:
            value = request.json.get("input")
            found.append(value if isinstance(value, str) else str(value))
    return found
