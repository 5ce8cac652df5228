"""The loopback OpenAI fake, exercised through the real openai SDK (async and sync clients)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.conversations import Conversation, ConversationItemList
from openai.types.responses import Response, ResponseStreamEvent

from tests.fakes.openai_server import FakeOpenAI, FakeOpenAIThread


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(models=("gpt-test", "gpt-other")) as f:
        yield f


MakeClient = Callable[..., openai.AsyncOpenAI]


@pytest.fixture
async def client() -> AsyncIterator[MakeClient]:
    """client(fake, **options) -> a real AsyncOpenAI on the fake (max_retries=0 unless given), closed after."""
    made: list[openai.AsyncOpenAI] = []

    def make(fake: FakeOpenAI, **kw: Any) -> openai.AsyncOpenAI:
        kw.setdefault("max_retries", 0)
        kw.setdefault("api_key", "test")
        made.append(openai.AsyncOpenAI(base_url=fake.base_url, **kw))
        return made[-1]

    yield make
    for c in made:
        await c.close()


async def test_conversation_crud_and_limits(fake: FakeOpenAI, client: MakeClient) -> None:
    c = client(fake)
    conv = await c.conversations.create(metadata={"platform": "slack"},
                                        items=[{"role": "user", "content": "x"}])
    assert conv.id.startswith("conv_") and conv.object == "conversation"
    state = fake.conversations[conv.id]
    assert state.metadata == {"platform": "slack"} and len(state.items) == 1
    assert fake.requests[state.created_by_request_index].path == "/v1/conversations"
    assert (await c.conversations.retrieve(conv.id)).metadata == {"platform": "slack"}
    updated = await c.conversations.update(conv.id, metadata={"platform": "discord"})
    assert updated.metadata == {"platform": "discord"}

    with pytest.raises(openai.BadRequestError) as too_many:
        await c.conversations.create(items=[{"role": "user", "content": str(i)} for i in range(21)])
    assert too_many.value.param == "items"
    bad_metadata: list[dict[str, str]] = [
        {f"k{i}": "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}]
    for metadata in bad_metadata:
        with pytest.raises(openai.BadRequestError) as err:
            await c.conversations.create(metadata=metadata)
        assert err.value.type == "invalid_request_error"
    assert len(fake.active_conversations) == 1

    deleted = await c.conversations.delete(conv.id)
    assert deleted.deleted and deleted.object == "conversation.deleted"
    assert fake.conversations[conv.id].deleted and fake.orphan_items == {state.items[0]["id"]}
    with pytest.raises(openai.NotFoundError):
        await c.conversations.retrieve(conv.id)


async def test_responses_non_stream_grows_conversation(fake: FakeOpenAI, client: MakeClient) -> None:
    c = client(fake)
    conv = await c.conversations.create()
    first = await c.responses.create(model="gpt-test", conversation=conv.id, input="hello",
                                     instructions="be brief", prompt_cache_key="thread-1")
    assert first.output_text == "echo: hello" and first.status == "completed"
    assert first.id.startswith("resp_") and str(first.output[0].id).startswith("msg_")
    assert first.conversation is not None and first.conversation.id == conv.id
    assert first.instructions == "be brief" and first.prompt_cache_key == "thread-1"
    assert first.usage is not None and first.usage.input_tokens_details.cached_tokens == 0

    second = await c.responses.create(model="gpt-test", conversation={"id": conv.id},
                                      input=[{"role": "user", "content": "more"}],
                                      instructions="be brief", prompt_cache_key="thread-1", truncation="auto")
    assert second.usage is not None and second.usage.input_tokens > first.usage.input_tokens
    assert second.usage.input_tokens_details.cached_tokens == first.usage.input_tokens
    assert second.truncation == "auto"
    items = fake.conversations[conv.id].items
    assert [(i["role"], i["content"][0]["type"]) for i in items] == 2 * [
        ("user", "input_text"), ("assistant", "output_text")]
    body = fake.requests[-1].json
    assert body is not None and body["prompt_cache_key"] == "thread-1"
    assert fake.requests[-1].headers["authorization"] == "Bearer test"
    assert (await c.responses.retrieve(second.id)).output_text == "echo: more"


async def test_reply_callback_sees_history(fake: FakeOpenAI, client: MakeClient) -> None:
    seen: list[tuple[str, int]] = []

    def reply(text: str, items: list[dict[str, Any]]) -> str:
        seen.append((text, len(items)))
        return f"turn {len(items) // 2 + 1}"

    fake.reply = reply
    c = client(fake)
    conv = await c.conversations.create()
    for text in ("a", "b"):
        resp = await c.responses.create(model="gpt-test", conversation=conv.id, input=text)
    assert resp.output_text == "turn 2" and seen == [("a", 0), ("b", 2)]


async def test_responses_stream(fake: FakeOpenAI, client: MakeClient) -> None:
    c = client(fake)
    conv = await c.conversations.create()
    stream = await c.responses.create(model="gpt-test", conversation=conv.id, input="streaming please",
                                      stream=True)
    events = [e async for e in stream]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) >= 3 and "".join(deltas) == "echo: streaming please"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    done = events[-1]
    assert done.type == "response.completed" and done.response.output_text == "echo: streaming please"
    assert len(fake.conversations[conv.id].items) == 2


async def test_stream_helper(fake: FakeOpenAI, client: MakeClient) -> None:
    async with client(fake).responses.stream(model="gpt-test", input="hi") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    assert final.output_text == "echo: hi"


async def test_deleted_conversation_is_404_without_code(fake: FakeOpenAI, client: MakeClient) -> None:
    c = client(fake)
    conv = await c.conversations.create()
    await c.responses.create(model="gpt-test", conversation=conv.id, input="hi")
    fake.delete_conversation(conv.id)
    with pytest.raises(openai.NotFoundError) as err:
        await c.responses.create(model="gpt-test", conversation=conv.id, input="hi again")
    assert err.value.code is None and err.value.param is None and err.value.type == "invalid_request_error"
    assert err.value.request_id is not None and err.value.request_id.startswith("req_")
    assert err.value.body == {"message": f"Conversation with id '{conv.id}' not found.",
                              "type": "invalid_request_error", "param": None, "code": None}
    with pytest.raises(openai.NotFoundError):
        await c.conversations.items.list(conv.id)
    assert len(fake.orphan_items) == 2


async def test_unknown_model(fake: FakeOpenAI, client: MakeClient) -> None:
    c = client(fake)
    with pytest.raises(openai.NotFoundError) as err:
        await c.responses.create(model="gpt-missing", input="hi")
    assert err.value.code == "model_not_found"
    assert "The model 'gpt-missing' does not exist" in err.value.message
    with pytest.raises(openai.NotFoundError) as err2:
        await c.models.retrieve("gpt-missing")
    assert err2.value.code == "model_not_found"
    assert (await c.models.retrieve("gpt-other")).id == "gpt-other"
    assert [m.id async for m in c.models.list()] == ["gpt-test", "gpt-other"]


async def test_rate_limit_then_sdk_retry_succeeds(fake: FakeOpenAI, client: MakeClient) -> None:
    fake.fail_next(429, code="rate_limit_exceeded", path_prefix="/v1/responses",
                   headers={"retry-after-ms": "1"})
    resp = await client(fake, max_retries=2).responses.create(model="gpt-test", input="hi")
    assert resp.output_text == "echo: hi" and fake.count("POST", "/v1/responses") == 2


async def test_injected_status_errors(fake: FakeOpenAI, client: MakeClient) -> None:
    c = client(fake)
    fake.fail_next(429, code="rate_limit_exceeded", headers={"retry-after": "7"})
    with pytest.raises(openai.RateLimitError) as rl:
        await c.models.list()
    assert rl.value.code == "rate_limit_exceeded" and rl.value.response.headers["retry-after"] == "7"
    fake.fail_next(500, times=2, path_prefix="/v1/models")
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await c.models.list()
    await c.conversations.create()  # prefix did not match: untouched
    assert len([m async for m in c.models.list()]) == 2  # faults used up
    fake.fail_next(404, body={"detail": "Not Found"})
    with pytest.raises(openai.NotFoundError) as nf:
        await c.conversations.retrieve("conv_x")
    assert nf.value.code is None and nf.value.body == {"detail": "Not Found"}


async def test_conversation_locked(fake: FakeOpenAI, client: MakeClient) -> None:
    c = client(fake)
    conv = await c.conversations.create()
    fake.fail_next(400, code="conversation_locked", message="Conversation is locked.")
    with pytest.raises(openai.BadRequestError) as err:
        await c.responses.create(model="gpt-test", conversation=conv.id, input="hi")
    assert err.value.code == "conversation_locked"
    assert fake.conversations[conv.id].items == []


async def test_simulated_lock_on_concurrent_turns(fake: FakeOpenAI, client: MakeClient) -> None:
    fake.simulate_locks = True
    c = client(fake)
    conv = await c.conversations.create()
    fake.latency = 0.5
    first = asyncio.create_task(c.responses.create(model="gpt-test", conversation=conv.id, input="one"))
    for _ in range(1000):  # wait until the first turn holds the conversation (it then sleeps 0.5 s)
        if fake.count("POST", "/v1/responses"):
            break
        await asyncio.sleep(0.005)
    with pytest.raises(openai.BadRequestError) as err:
        await c.responses.create(model="gpt-test", conversation=conv.id, input="two")
    assert err.value.code == "conversation_locked"
    assert (await first).output_text == "echo: one"


async def test_timeout_and_hang(fake: FakeOpenAI, client: MakeClient) -> None:
    fake.fail_next(0, delay=5.0, path_prefix="/v1/responses")
    with pytest.raises(openai.APITimeoutError):
        await client(fake, timeout=0.2).responses.create(model="gpt-test", input="slow")
    fake.fail_next(0, delay=0.01)  # status 0: hang a little, then answer normally
    assert (await client(fake).responses.create(model="gpt-test", input="ok")).output_text == "echo: ok"


async def test_context_limit(client: MakeClient) -> None:
    async with FakeOpenAI(context_limit=3) as fake:
        c = client(fake)
        conv = await c.conversations.create()
        for text in ("a", "b"):
            await c.responses.create(model="gpt-test", conversation=conv.id, input=text)
        with pytest.raises(openai.BadRequestError) as err:
            await c.responses.create(model="gpt-test", conversation=conv.id, input="c")
        assert err.value.code == "context_length_exceeded"
        state = fake.conversations[conv.id]
        assert len(state.items) == 4 and not fake.truncations
        resp = await c.responses.create(model="gpt-test", conversation=conv.id, input="c", truncation="auto")
        assert resp.output_text == "echo: c" and resp.usage is not None
        assert state.truncated_turns == 1 and state.dropped_items == 2
        assert fake.truncations[0].conversation_id == conv.id and fake.truncations[0].kept == 3


async def test_chat_completions(fake: FakeOpenAI, client: MakeClient) -> None:
    seen: list[int] = []

    def reply(text: str, items: list[dict[str, Any]]) -> str:
        seen.append(len(items))
        return f"chat: {text}"

    fake.reply = reply
    c = client(fake)
    messages: list[Any] = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}]
    done = await c.chat.completions.create(model="gpt-test", messages=messages)
    assert done.choices[0].message.content == "chat: hello" and done.usage is not None
    stream = await c.chat.completions.create(model="gpt-test", messages=messages, stream=True,
                                             stream_options={"include_usage": True})
    chunks = [ch async for ch in stream]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "chat: hello" and chunks[-1].usage is not None and seen == [1, 1]
    stream2 = await c.chat.completions.create(model="gpt-test", messages=messages, stream=True)
    assert [ch.usage async for ch in stream2 if ch.usage is not None] == []
    with pytest.raises(openai.NotFoundError) as err:
        await c.chat.completions.create(model="nope", messages=messages)
    assert err.value.code == "model_not_found"


async def test_items_list_create_delete(fake: FakeOpenAI, client: MakeClient) -> None:
    c = client(fake)
    conv = await c.conversations.create(items=[{"role": "user", "content": f"m{i}"} for i in range(5)])
    added = await c.conversations.items.create(conv.id, items=[{"role": "assistant", "content": "a"}])
    assert len(added.data) == 1
    ids = [i["id"] for i in fake.conversations[conv.id].items]
    page = await c.conversations.items.list(conv.id, limit=2, order="asc")
    assert [i.id for i in page.data] == ids[:2] and page.has_more
    assert [i.id async for i in c.conversations.items.list(conv.id, limit=4)] == ids[::-1]
    item = await c.conversations.items.retrieve(ids[0], conversation_id=conv.id)
    assert item.id == ids[0]
    for item_id in ids:
        after = await c.conversations.items.delete(item_id, conversation_id=conv.id)
        assert after.id == conv.id
    assert fake.conversations[conv.id].items == []
    with pytest.raises(openai.NotFoundError):
        await c.conversations.items.delete(ids[0], conversation_id=conv.id)
    await c.conversations.delete(conv.id)
    assert fake.orphan_items == set()
    assert fake.count("DELETE", f"/v1/conversations/{conv.id}/items/") == 7


async def test_auth_unknown_route_and_records(fake: FakeOpenAI, client: MakeClient) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        await client(fake, api_key="bad-key").models.list()
    assert err.value.code == "invalid_api_key"
    async with httpx2.AsyncClient() as http:
        missing = await http.get(f"{fake.base_url}/models")
        unknown = await http.get(f"{fake.base_url}/assistants", headers={"Authorization": "Bearer t"})
    assert missing.status_code == 401 and unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "Invalid URL (GET /v1/assistants)"
    assert fake.calls[-1] == ("GET", "/v1/assistants") and fake.count("get", "/v1/") == 3
    fake.reset_calls()
    assert fake.calls == [] and fake.requests == []


async def test_payloads_validate_strictly_against_sdk_models(fake: FakeOpenAI, client: MakeClient) -> None:
    c = client(fake)
    conv = await c.conversations.with_raw_response.create(items=[{"role": "user", "content": "x"}])
    conv_id = Conversation.model_validate(conv.http_response.json()).id
    raw = await c.responses.with_raw_response.create(model="gpt-test", conversation=conv_id, input="hi")
    Response.model_validate(raw.http_response.json())
    items = await c.conversations.items.with_raw_response.list(conv_id)
    ConversationItemList.model_validate(items.http_response.json())
    event = pydantic.TypeAdapter(ResponseStreamEvent)
    headers = {"Authorization": "Bearer t"}
    async with httpx2.AsyncClient(base_url=fake.base_url, headers=headers) as http:
        sse = await http.post("/responses", json={"model": "gpt-test", "input": "hello", "stream": True})
        assert sse.headers["content-type"].startswith("text/event-stream")
        data = [json.loads(line[6:]) for line in sse.text.splitlines() if line.startswith("data: ")]
        assert len(data) >= 10
        for payload in data:
            event.validate_python(payload)
        chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "a"}]}
        ChatCompletion.model_validate((await http.post("/chat/completions", json=chat)).json())
        chat_sse = await http.post("/chat/completions", json={**chat, "stream": True,
                                                               "stream_options": {"include_usage": True}})
        lines = [line[6:] for line in chat_sse.text.splitlines() if line.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        for line in lines[:-1]:
            ChatCompletionChunk.model_validate(json.loads(line))


def test_thread_runner_with_sync_client() -> None:
    runner = FakeOpenAIThread(reply=lambda text, items: text.upper())
    with pytest.raises(RuntimeError):
        _ = runner.base_url  # not started yet
    with runner, openai.OpenAI(base_url=runner.base_url, api_key="test", max_retries=0) as c:
        conv = c.conversations.create()
        assert c.responses.create(model="gpt-test", conversation=conv.id, input="hi").output_text == "HI"
        stream = c.responses.create(model="gpt-test", conversation=conv.id, input="abc", stream=True)
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        assert "".join(deltas) == "ABC"
        assert len(runner.fake.conversations[conv.id].items) == 4
        runner.fake.fail_next(404, body={"detail": "Not Found"})
        with pytest.raises(openai.NotFoundError) as err:
            c.conversations.retrieve(conv.id)
        assert err.value.code is None and err.value.body == {"detail": "Not Found"}
        runner.fake.fail_next(0, delay=5.0)
        with pytest.raises(openai.APITimeoutError):
            c.with_options(timeout=0.2).models.list()
        assert runner.fake.count("GET", "/v1/models") == 1
