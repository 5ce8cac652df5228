"""``python -m bot profiles show|check``: the profile that applies in one place, and a file's validity.

``show`` prints the effective profile (defaults merged in) for a platform, workspace and channel, with
secrets masked: MCP header values never appear (only the variable they come from), a server URL's
query is cut, and any configured secret is scrubbed. ``check FILE`` validates a file without using it.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from bot.checks import scrub, secrets_of
from bot.config import Settings
from bot.domain import ThreadKey
from bot.ops.safety_check import summary
from bot.profiles import PLATFORMS, McpServer, Profile, ProfileError, Profiles, Tool, load_profiles, read_profiles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="print the profile that applies in one place (secrets masked)")
    show.add_argument("--platform", required=True, choices=sorted(PLATFORMS))
    show.add_argument("--workspace", default="", help="Slack team id, Discord server id, or dm")
    show.add_argument("--channel", default="", help="channel id")
    show.add_argument("--file", help="a profiles file other than PROFILES_FILE")
    check = sub.add_parser("check", help="validate a profiles file (exit 1 when it has a mistake)")
    check.add_argument("file")


def _url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "…" if parts.query else "", ""))


def _tool(tool: Tool) -> str:
    if not isinstance(tool, McpServer):
        stores = f" (vector stores: {', '.join(tool.vector_store_ids)})" if tool.vector_store_ids else ""
        return tool.type + stores
    free = ", ".join(tool.allowed_tools) or "none"
    text = (f"mcp {tool.server_label}: {_url(tool.server_url)}; runs without asking: {free}; "
            "any other tool: declined (needs approval)")
    if tool.header_envs:
        text += "; headers: " + ", ".join(f"{h}=*** (from {env})" for h, env in tool.header_envs)
    return text


def render(profile: Profile, key: ThreadKey, profiles: Profiles) -> list[str]:
    where = next((m.describe() for m, p in profiles.rules if p is profile), "")
    lines = [f"profile: {profile.name}" + (f" (matches {where})" if where else ""),
             f"for: platform={key.platform} workspace={key.workspace or '-'} channel={key.channel or '-'}",
             f"file: {profiles.source or '(none: PROFILES_FILE is not set)'}",
             f"model: {profile.model}",
             f"temperature: {profile.temperature if profile.temperature is not None else '(the model default)'}",
             "instructions:", *(f"  {line}" for line in profile.instructions.splitlines()),
             "tools:" + ("" if profile.tools else " none"), *(f"  - {_tool(t)}" for t in profile.tools)]
    if profile.suggested_prompts:
        lines += ["suggested prompts:", *(f"  - {p.title}: {p.message}" for p in profile.suggested_prompts)]
    return lines


def _secrets(settings: Settings, profiles: Profiles) -> list[str]:
    values = secrets_of(settings)
    for _, profile in ((None, profiles.defaults), *profiles.rules):
        values += [v for t in profile.tools if isinstance(t, McpServer) for _, v in t.headers if len(v) >= 4]
    return values


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    stream = out or sys.stdout
    if args.action == "check":
        try:
            profiles = read_profiles(args.file, settings)
        except ProfileError as exc:
            print(f"FAIL {args.file}: {exc}", file=stream)
            return 1
        print(f"OK {args.file}: {summary(profiles)}", file=stream)
        return 0
    if args.file:
        try:
            profiles = read_profiles(args.file, settings)
        except ProfileError as exc:
            print(f"FAIL {args.file}: {exc}", file=stream)
            return 1
    else:
        profiles = load_profiles(settings)  # a ConfigError: one line, exit 2
    key = ThreadKey(args.platform, args.workspace, args.channel, "-")
    secrets = _secrets(settings, profiles)
    for line in render(profiles.resolve(key), key, profiles):
        print(scrub(line, secrets), file=stream)
    return 0
