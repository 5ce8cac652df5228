"""Per-place profiles (PROFILES_FILE): validation, matching, per-request use, reload, and the CLI.

Requests go through the real core and the real openai SDK to the loopback fake OpenAI, on the real
Redis; the reload tests send a real SIGHUP to this process (handled by the event loop) and wait for the
reload to finish, never a fixed time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from bot.__main__ import _parser as cli_parser
from bot.config import ConfigError
from bot.domain import Incoming, ThreadKey
from bot.ops import profiles_cli
from bot.ops.safety_check import check_profiles
from bot.profiles import McpServer, ProfileError, load_profiles, parse_profiles, read_profiles
from bot.profiles.model import Profile
from bot.runtime import Runtime
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import TEAM_ID, event_envelope
from tests.support.cli import bot, stderr_lines
from tests.support.fixtures import MakeRuntime, settings_for_test
from tests.support.slack import StartSlack

BASE = Profile("gpt-test", "Be brief.")
SUPPORT = ThreadKey("slack", "T0123", "C0456", "U1")
GUILD = ThreadKey("discord", "9876543210", "555", "U2")
ELSEWHERE = ThreadKey("slack", "T0123", "C0999", "U3")

EXAMPLE = """
defaults:
  model: gpt-test
  instructions: "@prompts/default.md"
profiles:
  - name: support
    match: {platform: slack, workspace: T0123, channel: C0456}
    instructions: "You are the support desk of Acme."
    model: gpt-support
    temperature: 0.2
    tools: [web_search]
    suggested_prompts: [{title: "Open a ticket", message: "Help me write a support ticket."}]
  - match: {platform: discord, workspace: 9876543210}
    model: gpt-guild
    tools:
      - {type: mcp, server_label: docs, server_url: "https://mcp.example.com/sse?tenant=acme",
         allowed_tools: [search_docs], headers_from_env: {Authorization: DOCS_MCP_TOKEN}}
  - match: {platform: slack, workspace: T0123}
    instructions: "You answer the whole Acme workspace."
"""
TOKEN = "Bearer docs-secret-token-123"


def write(folder: Path, text: str = EXAMPLE) -> Path:
    (folder / "prompts").mkdir(exist_ok=True)
    (folder / "prompts" / "default.md").write_text("Default instructions from a file.\n", encoding="utf-8")
    path = folder / "profiles.yml"
    path.write_text(text, encoding="utf-8")
    return path


def parse(text: str, folder: Path, *, backend: str = "conversations", env: dict[str, str] | None = None) -> Any:
    write(folder, "")
    return parse_profiles(text, base=BASE, folder=folder, env=env if env is not None else {"DOCS_MCP_TOKEN": TOKEN},
                          backend=backend, source="profiles.yml")


# -- the file ------------------------------------------------------------------------------------
def test_the_most_specific_match_wins_and_elsewhere_gets_the_defaults(tmp_path: Path) -> None:
    profiles = parse(EXAMPLE, tmp_path)
    support = profiles.resolve(SUPPORT)
    assert (support.name, support.model, support.instructions) == (
        "profiles[0] 'support'", "gpt-support", "You are the support desk of Acme.")
    assert support.temperature == 0.2 and [t.label for t in support.tools] == ["web_search"]
    assert support.suggested_prompts[0].title == "Open a ticket"
    workspace = profiles.resolve(ELSEWHERE)  # the workspace profile, with the defaults' model
    assert (workspace.name, workspace.model) == ("profiles[2]", "gpt-test")
    assert workspace.instructions == "You answer the whole Acme workspace." and workspace.tools == ()
    guild = profiles.resolve(GUILD)  # an unquoted Discord id matches too
    assert guild.model == "gpt-guild" and guild.instructions == "Default instructions from a file."
    [docs] = guild.tools
    assert isinstance(docs, McpServer) and docs.headers == (("Authorization", TOKEN),)
    assert TOKEN not in repr(docs), "header values never show in a repr"
    assert profiles.resolve(ThreadKey("console", "local", "console", "me")) == profiles.defaults
    assert profiles.resolve(ThreadKey("slack", "T0123", "C0456/1700000000.0001", "U1")).model == "gpt-support"


@pytest.mark.parametrize(("text", "line"), [
    ("profiles:\n  - match: {platform: slack}\n    modle: gpt-x\n",
     "profiles[0]: modle: unknown key (did you mean model?)"),
    ("profiles:\n  - name: desk\n    match: {platform: slack}\n    model: ''\n", "profiles[0] 'desk': model: is empty"),
    ("profiles:\n  - match: {platform: slack}\n    model: 4\n", "profiles[0]: model: must be a string"),
    ("profiles:\n  - match: {platform: slack}\n    model: [a]\n", "profiles[0]: model: must be a string"),
    ("defaults:\n  instructions: '@missing.md'\n", "defaults: instructions: cannot read {folder}/missing.md: "
     "No such file or directory"),
    ("profiles:\n  - match: {platform: slak}\n", "profiles[0]: match: platform: 'slak' is none of console, "
     "discord, slack"),
    ("profiles:\n  - match: {platform: slack, team: T1}\n", "profiles[0]: match: team: unknown key (known: "
     "platform, workspace, channel)"),
    ("profiles:\n  - model: gpt-x\n", "profiles[0]: match: missing (name a platform, workspace and/or channel)"),
    ("profiles:\n  - match: {platform: slack}\n  - match: {platform: slack}\n",
     "profiles[1]: match: the same as profiles[0], so it could never apply"),
    ("profiles:\n  - match: {platform: slack}\n    tools: [{type: mcp, server_label: d, server_url: 'https://x.test',"
     " headers: {Authorization: secret}}]\n", "profiles[0]: tools[0]: headers: unknown key (secrets stay out of the "
     "file: name environment variables in headers_from_env)"),
    ("profiles:\n  - match: {platform: slack}\n    tools: [{type: mcp, server_label: d, server_url: 'https://x.test',"
     " headers_from_env: {Authorization: NOT_SET_ANYWHERE}}]\n", "profiles[0]: tools[0]: headers_from_env: "
     "Authorization: the environment variable NOT_SET_ANYWHERE is not set"),
    ("profiles:\n  - match: {platform: slack}\n    tools: [file_search]\n", "profiles[0]: tools[0]: vector_store_ids: "
     "file_search needs at least one vector store id"),
    ("profiles:\n  - match: {platform: slack}\n    tools: [code_golf]\n", "profiles[0]: tools[0]: type: unknown tool "
     "'code_golf' (known: web_search, file_search, mcp)"),
    ("profiles:\n  - match: {platform: slack}\n    temperature: 3\n", "profiles[0]: temperature: must be between 0 "
     "and 2"),
    ("profile: []\n", "the file: profile: unknown key (did you mean profiles?)"),
    ("profiles:\n  - match: {platform: slack\n",
     "not valid YAML at line 3: expected ',' or '}', but got '<stream end>'"),
])
def test_a_mistake_is_one_line_naming_the_profile_and_the_key(text: str, line: str, tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        parse(text, tmp_path)
    assert str(caught.value) == line.replace("{folder}", str(tmp_path))


def test_the_chat_backend_refuses_hosted_tools_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        parse(EXAMPLE, tmp_path, backend="chat")
    assert str(caught.value) == ("profiles[0] 'support': tools: the chat backend (ASSISTANT_BACKEND=chat) has no "
                                 "hosted tools; remove them or use ASSISTANT_BACKEND=conversations")
    assert parse("profiles:\n  - match: {platform: slack}\n    model: gpt-x\n", tmp_path, backend="chat").rules


def test_load_names_the_setting_and_the_file(tmp_path: Path, redis_url: str) -> None:
    path = write(tmp_path, "profiles:\n  - match: {platform: slack}\n    model: ''\n")
    settings = settings_for_test(redis_url, "tk", "http://127.0.0.1:9/v1", profiles_file=str(path))
    with pytest.raises(ConfigError) as caught:
        load_profiles(settings)
    assert str(caught.value) == f"PROFILES_FILE: {path}: profiles[0]: model: is empty"
    unset = load_profiles(settings_for_test(redis_url, "tk", "http://127.0.0.1:9/v1"))
    assert unset.rules == () and unset.defaults.model == "gpt-test"


def test_the_bot_refuses_to_start_with_a_bad_profile_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "profiles:\n  - match: {platform: slack}\n    tools: [web_search, {type: nope}]\n")
    result = bot("console", cwd=tmp_path, env={"OPENAI_API_KEY": "sk-test", "PROFILES_FILE": str(path)})
    assert result.returncode == 2
    assert stderr_lines(result) == [f"configuration error: PROFILES_FILE: {path}: profiles[0]: tools[1]: type: "
                                    "unknown tool 'nope' (known: web_search, file_search, mcp)"]
    chat = bot("console", cwd=tmp_path, env={"OPENAI_API_KEY": "sk-test", "PROFILES_FILE": str(write(tmp_path)),
                                             "ASSISTANT_BACKEND": "chat", "DOCS_MCP_TOKEN": TOKEN})
    assert chat.returncode == 2 and stderr_lines(chat)[-1].startswith("configuration error: PROFILES_FILE: ")
    assert "the chat backend (ASSISTANT_BACKEND=chat) has no hosted tools" in chat.stderr


# -- per request ---------------------------------------------------------------------------------
def turns(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.json or {} for r in fake.requests if r.method == "POST" and r.path == "/v1/responses"]


async def ask(runtime: Runtime, key: ThreadKey, text: str, message_id: str) -> str:
    answer = await runtime.core.handle(Incoming(key, text, message_id, is_dm=True))
    assert answer is not None
    return answer.text


@pytest.fixture
async def profiled(make_runtime: MakeRuntime, fake_openai: FakeOpenAI, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("DOCS_MCP_TOKEN", TOKEN)
    fake_openai.models += ["gpt-support", "gpt-guild", "gpt-new"]
    return await make_runtime(profiles_file=str(write(tmp_path)))


async def test_each_request_carries_its_profile_and_a_third_channel_the_defaults(
    profiled: Runtime, fake_openai: FakeOpenAI
) -> None:
    assert await ask(profiled, SUPPORT, "hello desk", "m1") == (
        "echo: hello desk\n\nSources:\n1. [The answer, documented](https://docs.example.test/answer)")
    await ask(profiled, GUILD, "hello guild", "m2")
    await ask(profiled, ThreadKey("slack", "T9999", "C1", "U4"), "hello elsewhere", "m3")
    support, guild, elsewhere = turns(fake_openai)
    assert (support["model"], support["instructions"], support["temperature"]) == (
        "gpt-support", "You are the support desk of Acme.", 0.2)
    assert support["tools"] == [{"type": "web_search"}]
    assert (guild["model"], guild["instructions"]) == ("gpt-guild", "Default instructions from a file.")
    assert guild["tools"] == [{"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com/sse?"
                               "tenant=acme", "require_approval": {"never": {"tool_names": ["search_docs"]}},
                               "headers": {"Authorization": TOKEN}}]
    assert (elsewhere["model"], elsewhere["instructions"]) == ("gpt-test", "Default instructions from a file.")
    assert "tools" not in elsewhere and "temperature" not in elsewhere


async def test_sighup_reloads_the_file_and_a_broken_edit_keeps_the_old_profile(
    profiled: Runtime, fake_openai: FakeOpenAI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = profiled.core.profiles
    await ask(profiled, SUPPORT, "before", "m1")
    conversation = turns(fake_openai)[-1]["conversation"]
    with live.on_sighup():
        write(tmp_path, EXAMPLE.replace("model: gpt-support", "model: gpt-new"))
        os.kill(os.getpid(), signal.SIGHUP)
        await live.reloaded(1)
        await ask(profiled, SUPPORT, "after", "m2")
        assert turns(fake_openai)[-1]["model"] == "gpt-new"
        assert turns(fake_openai)[-1]["conversation"] == conversation, "a new profile needs no new conversation"

        write(tmp_path, EXAMPLE.replace("model: gpt-support", "modle: gpt-broken"))
        with caplog.at_level(logging.ERROR, logger="threadkeeper.profiles"):
            os.kill(os.getpid(), signal.SIGHUP)
            await live.reloaded(2)
        await ask(profiled, SUPPORT, "still", "m3")
    assert turns(fake_openai)[-1]["model"] == "gpt-new", "the last good profiles stay"
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "profiles[0] 'support': modle: unknown key (did you mean model?)" in error.getMessage()
    assert "keeping the profiles loaded before" in error.getMessage()


async def test_an_edited_file_is_picked_up_without_a_signal(profiled: Runtime, fake_openai: FakeOpenAI,
                                                            tmp_path: Path) -> None:
    live = profiled.core.profiles
    live.check_every = 0.0  # look at the file at every message
    await ask(profiled, SUPPORT, "one", "m1")
    path = write(tmp_path, EXAMPLE.replace("You are the support desk of Acme.", "You are the new desk."))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # whatever the clock's resolution
    await ask(profiled, SUPPORT, "two", "m2")
    assert turns(fake_openai)[-1]["instructions"] == "You are the new desk."
    assert live.reloads == 1
    await ask(profiled, SUPPORT, "three", "m3")
    assert live.reloads == 1, "an unchanged file is not read again"


async def test_the_chat_backend_applies_model_and_instructions(make_runtime: MakeRuntime, fake_openai: FakeOpenAI,
                                                               tmp_path: Path) -> None:
    fake_openai.models.append("gpt-support")
    text = "profiles:\n  - match: {platform: slack, workspace: T0123, channel: C0456}\n    model: gpt-support\n" \
           "    instructions: You are the desk.\n    temperature: 0.5\n"
    runtime = await make_runtime(assistant_backend="chat", profiles_file=str(write(tmp_path, text)))
    await ask(runtime, SUPPORT, "hello", "m1")
    await ask(runtime, ELSEWHERE, "hello", "m2")
    desk, other = [r.json or {} for r in fake_openai.requests if r.path == "/v1/chat/completions"]
    assert (desk["model"], desk["messages"][0], desk["temperature"]) == (
        "gpt-support", {"role": "system", "content": "You are the desk."}, 0.5)
    assert other["model"] == "gpt-test" and "temperature" not in other
    assert other["messages"][0]["content"] == runtime.settings.assistant_instructions


async def test_a_new_slack_assistant_thread_gets_its_profiles_suggested_prompts(
    start_slack: StartSlack, tmp_path: Path
) -> None:
    text = f"profiles:\n  - match: {{platform: slack, workspace: {TEAM_ID}}}\n    suggested_prompts:\n" \
           "      - {title: Open a ticket, message: Help me write a support ticket.}\n"
    slack = await start_slack(profiles_file=str(write(tmp_path, text)))
    started = {"type": "assistant_thread_started", "event_ts": "1710000200.000001",
               "assistant_thread": {"user_id": "U1USER", "channel_id": "D7", "thread_ts": "1710000200.000000",
                                    "context": {"channel_id": "C1CHAN", "team_id": TEAM_ID}}}
    assert await slack.event(event_envelope(started)) == 200
    await slack.fake.wait_for(lambda: slack.fake.count("assistant.threads.setSuggestedPrompts") == 1)
    prompts = slack.fake.payloads("assistant.threads.setSuggestedPrompts")[0]["prompts"]
    assert (json.loads(prompts) if isinstance(prompts, str) else prompts) == [
        {"title": "Open a ticket", "message": "Help me write a support ticket."}]


# -- the command line and doctor ---------------------------------------------------------------------
def run_cli(argv: list[str], settings: Any) -> tuple[int, str]:
    args: argparse.Namespace = cli_parser().parse_args(argv)
    out = io.StringIO()
    return profiles_cli.run(args, settings, out), out.getvalue()


def test_profiles_show_prints_the_effective_profile_with_secrets_masked(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCS_MCP_TOKEN", TOKEN)
    path = write(tmp_path)
    settings = settings_for_test(redis_url, "tk", "http://127.0.0.1:9/v1", profiles_file=str(path))
    code, out = run_cli(["profiles", "show", "--platform", "discord", "--workspace", "9876543210"], settings)
    assert code == 0
    assert out.splitlines() == [
        "profile: profiles[1] (matches platform=discord workspace=9876543210)",
        "for: platform=discord workspace=9876543210 channel=-",
        f"file: {path}",
        "model: gpt-guild",
        "temperature: (the model default)",
        "instructions:",
        "  Default instructions from a file.",
        "tools:",
        "  - mcp docs: https://mcp.example.com/sse?…; runs without asking: search_docs; any other tool: declined "
        "(needs approval); headers: Authorization=*** (from DOCS_MCP_TOKEN)",
    ]
    assert "docs-secret" not in out and "tenant" not in out
    code, out = run_cli(["profiles", "show", "--platform", "slack", "--workspace", "T0123", "--channel", "C0456"],
                        settings)
    assert "profile: profiles[0] 'support' (matches platform=slack workspace=T0123 channel=C0456)" in out
    assert "  - web_search" in out and "  - Open a ticket: Help me write a support ticket." in out


def test_profiles_check_and_doctor_validate_a_file(tmp_path: Path, redis_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCS_MCP_TOKEN", TOKEN)
    good = write(tmp_path)
    settings = settings_for_test(redis_url, "tk", "http://127.0.0.1:9/v1", profiles_file=str(good))
    assert run_cli(["profiles", "check", str(good)], settings) == (
        0, f"OK {good}: 3 profile(s), default model 'gpt-test', tools: mcp:docs, web_search\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("profiles:\n  - match: {channel: C1}\n    model: ''\n", encoding="utf-8")
    assert run_cli(["profiles", "check", str(bad)], settings) == (1, f"FAIL {bad}: profiles[0]: model: is empty\n")
    assert read_profiles(good, settings).source == str(good)

    async def doctor(path: Path) -> list[str]:
        checked = settings_for_test(redis_url, "tk", "http://127.0.0.1:9/v1", profiles_file=str(path))
        return [str(line) for line in await check_profiles(checked, 1.0)]

    assert asyncio.run(doctor(good)) == [f"PASS profiles: PROFILES_FILE {good}: 3 profile(s), default model "
                                         "'gpt-test', tools: mcp:docs, web_search"]
    assert asyncio.run(doctor(bad)) == [f"FAIL profiles: PROFILES_FILE {bad}: profiles[0]: model: is empty — fix "
                                        f"the file (python -m bot profiles check {bad})"]
