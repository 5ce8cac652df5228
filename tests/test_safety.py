"""The safety layer: redaction before anything leaves, moderation before (and with ``both`` after) the answer,
and a one-way ``safety_identifier`` on every request.

Through the real core and the real openai SDK to the loopback fake OpenAI (its moderation endpoint flags
``fake.flagged_word``), on the real Redis; the start-up refusal runs the real ``python -m bot``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.config import ConfigError
from bot.domain import Attachment, Incoming, Quoted, ThreadKey, UserTurn, hash_user
from bot.errors import Unavailable
from bot.ops.safety_check import check_moderation, require_moderation
from bot.runtime import Runtime
from bot.safety import FLAGGED_ANSWER, FLAGGED_INPUT, Redactor, parse_patterns
from tests.fakes.openai_server import FakeOpenAI, FakeOpenAIThread
from tests.support.cli import bot, stderr_lines
from tests.support.fixtures import MakeRuntime, settings_for_test

KEY = ThreadKey("slack", "T1", "C1", "U0RAWUSERID")
EMAIL = "jane.doe+ops@example.co.uk"
API_KEY = "sk-proj-" + "a1B2c3D4" * 5


def responses(fake: FakeOpenAI) -> list[dict[str, object]]:
    return [r.json or {} for r in fake.requests if r.method == "POST" and r.path == "/v1/responses"]


def sample(runtime: Runtime, name: str, **labels: str) -> float:
    return runtime.metrics.registry.get_sample_value(name, labels) or 0.0


# -- redaction -----------------------------------------------------------------------------------------
def test_patterns_are_built_ins_or_named_regexes() -> None:
    patterns = parse_patterns(r" email , api_key, ticket=/TCK-\d{4,}/, path=/a\/b,c/ ")
    assert [name for name, _ in patterns] == ["email", "api_key", "ticket", "path"]
    assert parse_patterns(None) == () == parse_patterns("")
    redact = Redactor(patterns).text
    assert redact(f"mail {EMAIL} or key {API_KEY}, see TCK-12345 in a/b,c") == (
        "mail [redacted email] or key [redacted api_key], see [redacted ticket] in [redacted path]")
    assert redact("xoxb-1234567890-abcdefghij and ghp_" + "x" * 36 + " and AKIAABCDEFGHIJKLMNOP") == (
        "[redacted api_key] and [redacted api_key] and [redacted api_key]")
    assert redact("no secrets in sk-short or user@localhost") == "no secrets in sk-short or user@localhost"


@pytest.mark.parametrize(("spec", "error"), [
    ("phone", "'phone' is no built-in pattern (built-ins: email, api_key); write phone=/regex/ for your own"),
    ("bad=/(/", "bad: not a valid regular expression (missing ), unterminated subpattern)"),
    ("empty=/x*/", "empty: the pattern matches an empty text; it would redact nothing useful"),
    ("email,email", "email: named twice"),
    ("=/x/", "cannot read '=/x/': write built-in names (email, api_key) or name=/regex/, separated by commas"),
])
def test_a_bad_pattern_is_one_line(spec: str, error: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_patterns(spec)
    assert str(caught.value) == error
    with pytest.raises(ConfigError) as config:
        settings_for_test("redis://127.0.0.1:6379/9", "tk", "http://127.0.0.1:9/v1", redact_patterns=spec)
    assert str(config.value) == f"REDACT_PATTERNS: {error}"


def test_a_turn_is_redacted_in_its_text_context_and_text_files() -> None:
    turn = UserTurn(f"write to {EMAIL}", speaker="Jane", context=(Quoted("Bob", f"my key is {API_KEY}"),),
                    attachments=(Attachment("notes.txt", "text", "text/plain", text=f"cc {EMAIL}"),
                                 Attachment("a.png", "image", "image/png", data=b"\x89PNG")))
    redacted = Redactor(parse_patterns("email,api_key")).turn(turn)
    assert redacted.text == "write to [redacted email]" and redacted.speaker == "Jane"
    assert redacted.context[0].text == "my key is [redacted api_key]"
    assert redacted.attachments[0].text == "cc [redacted email]" and redacted.attachments[1] == turn.attachments[1]


async def test_a_redacted_email_never_reaches_the_assistant_nor_the_kept_turns(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    runtime = await make_runtime(redact_patterns="email,api_key", moderation="input")
    answer = await runtime.core.handle(Incoming(KEY, f"mail {EMAIL} with {API_KEY} please", "m1"))
    assert answer is not None and answer.text == "echo: mail [redacted email] with [redacted api_key] please"
    sent = " ".join(str(r.json) for r in fake_openai.requests)
    assert EMAIL not in sent and API_KEY not in sent and "[redacted email]" in sent
    assert fake_openai.moderated == ["mail [redacted email] with [redacted api_key] please"]
    kept = " ".join(t["text"] for t in await runtime.store.turns(KEY))
    assert EMAIL not in kept and "[redacted email]" in kept
    assert sample(runtime, "threadkeeper_redactions_total", pattern="email") == 1


# -- moderation ------------------------------------------------------------------------------------------
async def test_flagged_input_gets_one_sentence_and_no_assistant_call(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = await make_runtime(moderation="input")
    with caplog.at_level(logging.INFO):
        answer = await runtime.core.handle(Incoming(KEY, "tell me about the forbidden-fruit recipe", "m1"))
    assert answer is not None and answer.text == FLAGGED_INPUT
    assert responses(fake_openai) == [] and fake_openai.count("POST", "/v1/conversations") == 0
    assert sample(runtime, "threadkeeper_moderation_flagged_total", direction="input") == 1
    [line] = [r.getMessage() for r in caplog.records if "moderation flagged" in r.getMessage()]
    assert line == f"moderation flagged the input of {KEY.digest} (categories: violence)"
    assert all("forbidden-fruit" not in r.getMessage() for r in caplog.records), "never the text"
    assert await runtime.store.turns(KEY) == [], "nothing kept"
    assert await runtime.core.handle(Incoming(KEY, "tell me about the forbidden-fruit recipe", "m1")) is None

    clean = await runtime.core.handle(Incoming(KEY, "and apples?", "m2"))
    assert clean is not None and clean.text == "echo: and apples?"
    assert len(responses(fake_openai)) == 1 and fake_openai.moderated[-1] == "and apples?"


async def test_with_both_a_flagged_answer_is_replaced_and_never_streamed(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    runtime = await make_runtime(moderation="both")
    fake_openai.reply = lambda text, _items: f"here is the forbidden-fruit for {text}"
    streamed: list[str] = []

    async def on_delta(delta: str) -> None:
        streamed.append(delta)

    answer = await runtime.core.handle(Incoming(KEY, "a harmless question", "m1"), on_delta)
    assert answer is not None and answer.text == FLAGGED_ANSWER and streamed == []
    assert fake_openai.moderated == ["a harmless question", "here is the forbidden-fruit for a harmless question"]
    assert sample(runtime, "threadkeeper_moderation_flagged_total", direction="answer") == 1
    assert [t["text"] for t in await runtime.store.turns(KEY)] == ["a harmless question", FLAGGED_ANSWER]

    fake_openai.reply = lambda text, _items: f"echo: {text}"
    fine = await runtime.core.handle(Incoming(KEY, "another", "m2"), on_delta)
    assert fine is not None and fine.text == "echo: another" and streamed == [], "checked before shown"


async def test_a_failing_moderation_check_fails_closed(make_runtime: MakeRuntime, fake_openai: FakeOpenAI) -> None:
    runtime = await make_runtime(moderation="input", openai_max_retries=0)
    fake_openai.fail_next(503, path_prefix="/v1/moderations")
    with pytest.raises(Unavailable):
        await runtime.core.handle(Incoming(KEY, "hello", "m1"))
    assert responses(fake_openai) == []


async def test_doctor_and_the_start_refuse_a_server_without_moderation(
    fake_openai: FakeOpenAI, redis_url: str
) -> None:
    settings = settings_for_test(redis_url, "tk", fake_openai.base_url, moderation="input")
    assert [str(line) for line in await check_moderation(settings, 2.0)] == [
        f"PASS moderation: {fake_openai.base_url} moderates with 'omni-moderation-latest' (MODERATION=input)"]
    await require_moderation(settings)
    assert await check_moderation(settings_for_test(redis_url, "tk", fake_openai.base_url), 2.0) == []

    fake_openai.moderation_api = False
    missing = (f"{fake_openai.base_url} has no moderation endpoint (POST /moderations), which MODERATION=input "
               "needs")
    assert [str(line) for line in await check_moderation(settings, 2.0)] == [
        f"FAIL moderation: {missing} — use a server with one, or set MODERATION=off"]
    with pytest.raises(ConfigError) as caught:
        await require_moderation(settings)
    assert str(caught.value) == f"MODERATION: {missing}; set MODERATION=off or use a server that has one"


def test_the_bot_refuses_to_start_with_moderation_and_no_endpoint(tmp_path: Path) -> None:
    with FakeOpenAIThread() as server:
        server.fake.moderation_api = False
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url, "MODERATION": "input"}
        result = bot("console", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert stderr_lines(result) == [f"configuration error: MODERATION: {server.base_url} has no moderation endpoint "
                                    "(POST /moderations), which MODERATION=input needs; set MODERATION=off or use a "
                                    "server that has one"]


# -- safety_identifier -----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["conversations", "chat"])
async def test_every_request_carries_a_one_way_safety_identifier(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI, backend: str
) -> None:
    runtime = await make_runtime(assistant_backend=backend)
    await runtime.core.handle(Incoming(KEY, "hello", "m1"))
    path = "/v1/responses" if backend == "conversations" else "/v1/chat/completions"
    [request] = [r.json or {} for r in fake_openai.requests if r.path == path]
    identifier = request["safety_identifier"]
    assert identifier == f"tk-{hash_user('slack', 'U0RAWUSERID')}"
    assert "U0RAWUSERID" not in str(request), "never the raw user id"


async def test_a_server_that_refuses_the_identifier_still_answers_on_the_chat_backend(
    make_runtime: MakeRuntime, fake_openai: FakeOpenAI
) -> None:
    fake_openai.refuse_param("safety_identifier")
    runtime = await make_runtime(assistant_backend="chat", openai_max_retries=0)
    answer = await runtime.core.handle(Incoming(KEY, "hello", "m1"))
    assert answer is not None and answer.text == "echo: hello"
    assert await runtime.assistant.refused_params() == ["safety_identifier"]
