"""The fake OpenAI's third-party-server modes, seen through the real openai SDK.

Each test switches one mode of :class:`tests.fakes.openai_faults.ServerModes` on and records what the SDK
does with it (exception class, status, body), which is what the bot has to cope with.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest

from tests.fakes.openai_server import FakeOpenAI

MakeClient = Callable[..., openai.AsyncOpenAI]
USER: list[Any] = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def client(fake_openai: FakeOpenAI) -> AsyncIterator[MakeClient]:
    """client(**options) -> a real AsyncOpenAI on the fake (max_retries=0 unless given), closed after."""
    made: list[openai.AsyncOpenAI] = []

    def make(**kw: Any) -> openai.AsyncOpenAI:
        kw.setdefault("max_retries", 0)
        made.append(openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="test", **kw))
        return made[-1]

    yield make
    for c in made:
        await c.close()


async def test_modes_are_off_by_default(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    c = client()
    conv = await c.conversations.create(metadata={"k": "v"})
    resp = await c.responses.create(model="gpt-test", conversation=conv.id, input="hi", truncation="auto",
                                    prompt_cache_key="k", store=True, metadata={"a": "b"})
    assert resp.output_text == "echo: hi"
    assert fake_openai.refused == [] and fake_openai.created_count == 1
    assert fake_openai.chat_context_size is None and fake_openai.unknown_model_shape == "openai404"
    assert fake_openai.conversations_api and not fake_openai.always_locked
    assert fake_openai.last_chat_prompt_tokens is None


async def test_refused_parameter_openai_shape(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    c = client()
    conv = await c.conversations.create()
    fake_openai.refuse_param("prompt_cache_key")
    with pytest.raises(openai.BadRequestError) as err:
        await c.responses.create(model="gpt-test", conversation=conv.id, input="hi", prompt_cache_key="t1")
    assert err.value.status_code == 400 and err.value.code == "unsupported_parameter"
    assert err.value.param == "prompt_cache_key" and err.value.type == "invalid_request_error"
    assert isinstance(err.value.body, dict)
    assert err.value.body["message"].startswith("Unsupported parameter: 'prompt_cache_key'")
    assert fake_openai.conversations[conv.id].items == []  # nothing was done
    assert (await c.responses.create(model="gpt-test", conversation=conv.id, input="hi")).output_text
    assert fake_openai.refused == [("/v1/responses", "prompt_cache_key")]

    fake_openai.refuse_param("stream_options")
    fake_openai.refuse_param("metadata")
    with pytest.raises(openai.BadRequestError) as chat_err:
        await c.chat.completions.create(model="gpt-test", messages=USER, stream=True,
                                        stream_options={"include_usage": True})
    assert chat_err.value.param == "stream_options"
    with pytest.raises(openai.BadRequestError):
        await c.conversations.create(metadata={"platform": "slack"})
    assert fake_openai.created_count == 1
    assert fake_openai.refused[1:] == [("/v1/chat/completions", "stream_options"), ("/v1/conversations", "metadata")]


async def test_refused_truncation_value_as_fastapi_500(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    fake_openai.refuse_param("truncation", status=500, value="auto")
    c = client()
    conv = await c.conversations.create()
    with pytest.raises(openai.InternalServerError) as err:
        await c.responses.create(model="gpt-test", conversation=conv.id, input="hi", truncation="auto")
    assert err.value.status_code == 500 and err.value.code is None and err.value.param is None
    assert err.value.body == {"detail": "Error code: 500 - Truncation mode 'auto' is not supported"}
    assert err.value.message == "Error code: 500"  # the SDK finds no message outside an "error" object
    resp = await c.responses.create(model="gpt-test", conversation=conv.id, input="hi", truncation="disabled")
    assert resp.output_text == "echo: hi" and len(fake_openai.conversations[conv.id].items) == 2

    # a 5xx is retried by the SDK: every attempt is refused again
    with pytest.raises(openai.InternalServerError):
        await client(max_retries=1).responses.create(model="gpt-test", input="hi", truncation="auto")
    assert fake_openai.refused == 3 * [("/v1/responses", "truncation")]


async def test_refused_value_and_detail_shape_name_the_parameter(fake_openai: FakeOpenAI,
                                                                  client: MakeClient) -> None:
    fake_openai.refuse_param("store", value=False)
    fake_openai.refuse_param("safety_identifier", status=400, shape="detail")
    c = client()
    with pytest.raises(openai.BadRequestError) as err:
        await c.responses.create(model="gpt-test", input="hi", store=False)
    assert err.value.code == "unsupported_value" and err.value.param == "store"
    assert (await c.responses.create(model="gpt-test", input="hi", store=True)).output_text == "echo: hi"
    with pytest.raises(openai.BadRequestError) as detail:
        await c.responses.create(model="gpt-test", input="hi", safety_identifier="u1")
    assert detail.value.body == {"detail": "Error code: 400 - Parameter 'safety_identifier' is not supported"}


async def test_llama_server_context_overflow(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    fake_openai.chat_context_size = 50
    c = client()
    long: list[Any] = [{"role": "system", "content": "s" * 200}, {"role": "user", "content": "u" * 195}]
    expected = {"code": 400, "type": "exceed_context_size_error",
                "message": "request (100 tokens) exceeds the available context size (50 tokens), try increasing it",
                "n_prompt_tokens": 100, "n_ctx": 50}
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as err:
            await c.chat.completions.create(model="gpt-test", messages=long, stream=stream)
        assert err.value.body == expected  # the SDK unwraps {"error": {...}}
        assert err.value.code == "400" and err.value.type == "exceed_context_size_error"
        assert fake_openai.last_chat_prompt_tokens == 100
    raw = await c.chat.completions.with_raw_response.create(model="gpt-test", messages=USER, max_tokens=48)
    assert raw.http_response.status_code == 200 and fake_openai.last_chat_prompt_tokens == 2
    with pytest.raises(openai.BadRequestError) as reserved:
        await c.chat.completions.create(model="gpt-test", messages=USER, max_tokens=49)
    assert reserved.value.body == {**expected, "n_prompt_tokens": 2,
                                   "message": expected["message"].replace("100", "2")}
    fake_openai.chat_context_size = None
    done = await c.chat.completions.create(model="gpt-test", messages=long)
    assert done.usage is not None and done.usage.prompt_tokens == 100


async def test_unknown_model_shapes(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    c = client()
    with pytest.raises(openai.NotFoundError) as official:
        await c.chat.completions.create(model="nope", messages=USER)
    assert official.value.code == "model_not_found"

    fake_openai.unknown_model_shape = "compat400"
    with pytest.raises(openai.BadRequestError) as compat:
        await c.responses.create(model="nope", input="hi")
    assert compat.value.body == {"message": "model 'nope' not found", "type": "invalid_request_error"}
    assert compat.value.code is None and compat.value.param is None
    with pytest.raises(openai.BadRequestError):
        await c.models.retrieve("nope")

    fake_openai.unknown_model_shape = "ignore"
    assert (await c.responses.create(model="anything", input="hi")).output_text == "echo: hi"
    chat = await c.chat.completions.create(model="whatever", messages=USER)
    assert chat.model == "whatever" and chat.choices[0].message.content == "echo: hello"


async def test_model_retrieve_404_while_listed(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    fake_openai.model_retrieve_404 = True
    c = client()
    assert [m.id async for m in c.models.list()] == ["gpt-test"]
    with pytest.raises(openai.NotFoundError) as err:
        await c.models.retrieve("gpt-test")
    assert err.value.body == {"detail": "Not Found"} and err.value.code is None
    assert (await c.responses.create(model="gpt-test", input="hi")).output_text == "echo: hi"


async def test_server_without_conversations_api(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    fake_openai.conversations_api = False
    c = client()
    with pytest.raises(openai.NotFoundError) as create:
        await c.conversations.create()
    assert create.value.body == {"detail": "Not Found"} and create.value.code is None
    with pytest.raises(openai.NotFoundError):
        await c.conversations.items.list("conv_x")
    assert fake_openai.created_count == 0

    with pytest.raises(openai.BadRequestError) as unsupported:
        await c.responses.create(model="gpt-test", conversation="conv_x", input="hi")
    assert unsupported.value.code == "unsupported_parameter" and unsupported.value.param == "conversation"
    assert fake_openai.refused == [("/v1/responses", "conversation")]
    fake_openai.conversation_param_status = 404
    with pytest.raises(openai.NotFoundError) as missing:
        await c.responses.create(model="gpt-test", conversation="conv_x", input="hi")
    assert "conv_x" in missing.value.message
    fake_openai.conversation_param_status = None  # ignored: a stateless turn
    resp = await c.responses.create(model="gpt-test", conversation="conv_x", input="hi")
    assert resp.output_text == "echo: hi" and resp.conversation is None
    assert (await c.responses.create(model="gpt-test", input="plain")).output_text == "echo: plain"


async def test_hung_create_times_out_but_creates(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    fake_openai.hang_on_create(30)
    with pytest.raises(openai.APITimeoutError):
        await client(timeout=0.3).conversations.create(metadata={"thread": "t1"})
    assert fake_openai.created_count == 1
    (state,) = fake_openai.conversations.values()
    assert state.metadata == {"thread": "t1"}
    again = await client(timeout=0.3).conversations.create()  # the hang is used up
    assert again.id != state.id and fake_openai.created_count == 2


async def test_retried_create_duplicates_unless_key_honoured(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    key = {"Idempotency-Key": "thread-1"}
    fake_openai.hang_on_create(30)
    retried = await client(timeout=0.3, max_retries=1).conversations.create(extra_headers=key)
    assert fake_openai.count("POST", "/v1/conversations") == 2
    assert fake_openai.created_count == 2 and retried.id in fake_openai.conversations  # the header was ignored

    fake_openai.honour_idempotency = True
    fake_openai.hang_on_create(30)
    other = {"Idempotency-Key": "thread-2"}
    kept = await client(timeout=0.3, max_retries=1).conversations.create(extra_headers=other)
    assert fake_openai.created_count == 3
    first = fake_openai.requests[fake_openai.conversations[kept.id].created_by_request_index]
    assert first.headers["idempotency-key"] == "thread-2" and fake_openai.count("POST", "/v1/conversations") == 4
    assert (await client().conversations.create(extra_headers=other)).id == kept.id
    assert fake_openai.created_count == 3


async def test_truncated_json_body(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    c = client()
    conv = await c.conversations.create()
    fake_openai.truncate_next("/v1/responses")
    with pytest.raises(json.JSONDecodeError):  # not an openai error: the SDK's response.json() fails
        await c.responses.create(model="gpt-test", conversation=conv.id, input="hi")
    assert len(fake_openai.conversations[conv.id].items) == 2  # the turn happened all the same
    fake_openai.truncate_next("/v1/conversations")
    with pytest.raises(ValueError):
        await c.conversations.create()
    assert fake_openai.created_count == 2

    fake_openai.truncate_next("/v1/responses", abort=True)  # the connection drops short of Content-Length
    with pytest.raises(openai.APIConnectionError):
        await c.responses.create(model="gpt-test", conversation=conv.id, input="again")
    assert len(fake_openai.conversations[conv.id].items) == 4
    assert (await c.responses.create(model="gpt-test", input="ok")).output_text == "echo: ok"


async def test_truncated_streams(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    c = client()
    fake_openai.truncate_next("/v1/responses")
    stream = await c.responses.create(model="gpt-test", input="hello there", stream=True)
    kinds = [e.type async for e in stream]  # ends quietly, without response.completed
    assert kinds[0] == "response.created" and "response.completed" not in kinds
    fake_openai.truncate_next("/v1/responses")
    with pytest.raises(RuntimeError, match=r"response\.completed"):
        async with c.responses.stream(model="gpt-test", input="hi") as helper:
            async for _ in helper:
                pass
            await helper.get_final_response()
    fake_openai.truncate_next("/v1/chat/completions")
    chunks = [ch async for ch in await c.chat.completions.create(model="gpt-test", messages=USER, stream=True)]
    assert chunks and all(ch.choices[0].finish_reason is None for ch in chunks)  # no stop, no [DONE]

    fake_openai.truncate_next("/v1/", times=2, abort=True)
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for event in await c.responses.create(model="gpt-test", input="hi", stream=True):
            seen.append(event.type)
    assert seen and "response.completed" not in seen
    with pytest.raises(openai.APIConnectionError):
        async for _ in await c.chat.completions.create(model="gpt-test", messages=USER, stream=True):
            pass


async def test_empty_answers(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    c = client()
    conv = await c.conversations.create()
    fake_openai.empty_next("/v1/responses")
    resp = await c.responses.create(model="gpt-test", conversation=conv.id, input="hi")
    assert resp.status == "completed" and resp.output == [] and resp.output_text == ""
    assert [i["role"] for i in fake_openai.conversations[conv.id].items] == ["user"]
    fake_openai.empty_next("/v1/responses")
    events = [e async for e in await c.responses.create(model="gpt-test", input="hi", stream=True)]
    assert [e.type for e in events] == ["response.created", "response.in_progress", "response.completed"]
    fake_openai.empty_next("/v1/", times=2)
    chat = await c.chat.completions.create(model="gpt-test", messages=USER)
    assert chat.choices[0].message.content == ""
    chunks = [ch async for ch in await c.chat.completions.create(model="gpt-test", messages=USER, stream=True)]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == ""
    assert (await c.responses.create(model="gpt-test", input="back")).output_text == "echo: back"


async def test_conversation_locked_forever(fake_openai: FakeOpenAI, client: MakeClient) -> None:
    c = client()
    conv = await c.conversations.create()
    fake_openai.always_locked = True
    for _ in range(2):
        with pytest.raises(openai.BadRequestError) as err:
            await c.responses.create(model="gpt-test", conversation=conv.id, input="hi", stream=True)
        assert err.value.code == "conversation_locked" and err.value.param is None
        assert err.value.body == {"message": "Another process is currently operating on this conversation. "
                                  "Please retry in a few seconds.", "type": "invalid_request_error",
                                  "param": None, "code": "conversation_locked"}
    assert fake_openai.conversations[conv.id].items == []
    assert (await c.responses.create(model="gpt-test", input="no conversation")).output_text
