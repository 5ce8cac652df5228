"""``doctor`` against OpenAI-compatible servers (issue 13) and the wrong kind of Redis.

The fake OpenAI's opt-in modes (:mod:`tests.fakes.openai_faults`) imitate servers that only list
models (``model_retrieve_404``), have no Conversations API (``conversations_api = False``) or answer
an unknown model with a 400 (``unknown_model_shape = "compat400"``). A working setup must pass on
them; a setup that cannot work must fail with the setting to change.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bot.checks import secrets_of
from bot.ops import doctor
from tests.fakes.openai_server import FakeOpenAI
from tests.support.fixtures import settings_for_test

Run = Callable[..., Awaitable[tuple[int, dict[str, str]]]]
CHAT_FIX = "set ASSISTANT_BACKEND=chat (history kept in Redis; works with any chat completions server)"


@pytest.fixture
def run(redis_url: str, prefix: str, fake_openai: FakeOpenAI) -> Run:
    """``await run(**settings)`` -> (exit code, {piece: line}) for the core's checks (Redis and OpenAI)."""

    async def go(**overrides: Any) -> tuple[int, dict[str, str]]:
        settings = settings_for_test(overrides.pop("redis_url", redis_url), prefix, fake_openai.base_url,
                                     **overrides)
        out = io.StringIO()
        code = await doctor.main(settings, limit=3.0, out=out)
        text = out.getvalue()
        for secret in secrets_of(settings):
            assert secret not in text
        lines = text.splitlines()
        assert lines[-1].startswith("doctor: ")
        return code, {line.split(" ", 1)[1].split(":", 1)[0]: line for line in lines[:-1]}

    return go


# -- the model: retrieve, or the list where retrieve is missing ---------------------------------------------------


async def test_openai_itself_passes_with_the_conversations_api(run: Run, fake_openai: FakeOpenAI) -> None:
    code, lines = await run()
    assert code == 0, lines
    assert lines["openai"] == (f"PASS openai: key accepted by {fake_openai.base_url}; model 'gpt-test' available; "
                               "Conversations API present (conversations backend)")
    assert ("GET", "/v1/conversations/conv_doctor_probe") in fake_openai.calls


async def test_model_found_through_the_list_when_retrieve_404s(run: Run, fake_openai: FakeOpenAI) -> None:
    fake_openai.model_retrieve_404 = True
    code, lines = await run()
    assert code == 0, lines
    assert lines["openai"].startswith("PASS openai: ") and "model 'gpt-test' available" in lines["openai"]
    assert fake_openai.count("GET", "/v1/models/gpt-test") == 1
    assert ("GET", "/v1/models") in fake_openai.calls


async def test_unknown_model_on_a_server_that_only_lists(run: Run, fake_openai: FakeOpenAI) -> None:
    fake_openai.model_retrieve_404 = True
    fake_openai.models = ["llama-3-8b", "qwen2.5-7b"]
    code, lines = await run(openai_model="gpt-4.1-mini")
    assert code == 1
    assert lines["openai"] == (f"FAIL openai: model 'gpt-4.1-mini' not found; {fake_openai.base_url} lists "
                               "'llama-3-8b', 'qwen2.5-7b' — set OPENAI_MODEL to one of the models it lists")


@pytest.mark.parametrize("shape", ["openai404", "compat400"])
async def test_unknown_model_answered_either_way(run: Run, fake_openai: FakeOpenAI, shape: str) -> None:
    fake_openai.unknown_model_shape = shape  # type: ignore[assignment]
    code, lines = await run(openai_model="gpt-x")
    assert code == 1
    assert lines["openai"] == "FAIL openai: model 'gpt-x' not found — set OPENAI_MODEL to a model your key can use"
    assert fake_openai.count("POST", "/") == 0  # no answer was generated to find out


async def test_an_unrelated_400_is_not_an_unknown_model(run: Run, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(400, message="Something else is wrong.", path_prefix="/v1/models")
    code, lines = await run()
    assert code == 1
    where = fake_openai.base_url
    assert lines["openai"] == f"FAIL openai: {where} answered 400 to a model lookup — check OPENAI_BASE_URL"


async def test_no_models_endpoint_at_all(run: Run, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(404, body={"detail": "Not Found"}, path_prefix="/v1/models", times=2)
    code, lines = await run()
    assert code == 1
    assert lines["openai"].startswith(f"FAIL openai: {fake_openai.base_url} has no models endpoint (404)")


# -- the Conversations API ------------------------------------------------------------------------------------


async def test_no_conversations_api_fails_the_default_backend(run: Run, fake_openai: FakeOpenAI) -> None:
    fake_openai.conversations_api = False
    code, lines = await run()
    assert code == 1
    assert lines["openai"] == (
        f"FAIL openai: key accepted by {fake_openai.base_url}; model 'gpt-test' available, but it has no "
        f"Conversations API, which ASSISTANT_BACKEND=conversations (the default) needs — {CHAT_FIX}"
    )


async def test_no_conversations_api_is_fine_for_the_chat_backend(run: Run, fake_openai: FakeOpenAI) -> None:
    fake_openai.conversations_api = False
    code, lines = await run(assistant_backend="chat")
    assert code == 0, lines
    assert lines["openai"] == (f"PASS openai: key accepted by {fake_openai.base_url}; model 'gpt-test' available "
                               "(chat backend: the Conversations API is not needed)")
    assert fake_openai.count("GET", "/v1/conversations") == 0


async def test_a_vllm_like_server(run: Run, fake_openai: FakeOpenAI) -> None:
    """Models only listed, no Conversations API: the chat backend passes, the default fails with the fix."""
    fake_openai.model_retrieve_404 = True
    fake_openai.conversations_api = False
    code, lines = await run(assistant_backend="chat")
    assert code == 0 and lines["openai"].startswith("PASS openai: "), lines
    code, lines = await run()
    assert code == 1 and lines["openai"].endswith(f"— {CHAT_FIX}")


async def test_an_invalid_url_answer_means_no_conversations_api(run: Run, fake_openai: FakeOpenAI) -> None:
    """api.openai.com-shaped 404 for a route it lacks: the message names the id, but as part of a URL."""
    fake_openai.fail_next(404, message="Invalid URL (GET /v1/conversations/conv_doctor_probe)",
                          path_prefix="/v1/conversations")
    code, lines = await run()
    assert code == 1 and lines["openai"].endswith(f"— {CHAT_FIX}")


async def test_conversations_probe_that_cannot_tell_warns(run: Run, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(502, path_prefix="/v1/conversations")
    code, lines = await run()
    assert code == 0
    assert lines["openai"].startswith("WARN openai: ")
    assert "could not tell whether it has the Conversations API (it answered 502)" in lines["openai"]
    assert lines["openai"].endswith("— if answers fail, set ASSISTANT_BACKEND=chat")


# -- Redis of the wrong kind ------------------------------------------------------------------------------------


async def test_cluster_setting_against_a_single_server(run: Run, redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    code, lines = await run(redis_url=url, redis_cluster=True)
    assert code == 1
    assert lines["redis"] == (f"FAIL redis: {url} is a single Redis server, not a cluster — unset REDIS_CLUSTER "
                              "(and write redis://, not redis+cluster://), or point REDIS_URL at a cluster")


async def test_a_redis_url_that_does_not_parse(run: Run) -> None:
    code, lines = await run(redis_url="redis://:hunter2-secret@localhost:port/0")
    assert code == 1
    assert lines["redis"] == ("FAIL redis: redis://localhost:port/0 is not a usable Redis URL (Port could not be "
                              "cast to integer value as 'port') — write redis://[user:password@]host:port/db "
                              "(rediss:// for TLS)")
