"""What a profile is: the model, instructions, tools and prompts the answers in one place use.

A :class:`Profiles` snapshot is immutable: reloading the file makes a new one, so a message that
resolved its profile keeps it whatever happens to the file meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bot.domain import ThreadKey

PLATFORMS = frozenset({"slack", "discord", "console"})
"""Values ``match.platform`` may take (the ``platform`` of a :class:`~bot.domain.ThreadKey`)."""


@dataclass(frozen=True, slots=True)
class HostedTool:
    """A tool the provider runs itself: ``web_search``, or ``file_search`` over vector stores."""

    type: Literal["web_search", "file_search"]
    vector_store_ids: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The tool's name in metrics and logs."""
        return self.type


@dataclass(frozen=True, slots=True)
class McpServer:
    """A remote MCP server the provider calls for the model.

    Tools named in ``allowed_tools`` run without asking; any other tool of the server needs the user's
    approval (today: declined, see :mod:`bot.assistants.tools`). Header values come from environment
    variables (``header_envs``: header -> variable) and are held in ``headers``, never printed.
    """

    server_label: str
    server_url: str
    allowed_tools: tuple[str, ...] = ()
    header_envs: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    type: Literal["mcp"] = "mcp"

    @property
    def label(self) -> str:
        return f"mcp:{self.server_label}"


Tool = HostedTool | McpServer


@dataclass(frozen=True, slots=True)
class SuggestedPrompt:
    title: str
    message: str


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything one request takes from the profile; sent with every turn, never stored on a thread."""

    model: str
    instructions: str
    tools: tuple[Tool, ...] = ()
    temperature: float | None = None
    suggested_prompts: tuple[SuggestedPrompt, ...] = ()
    name: str = "defaults"
    """Where it came from: ``defaults`` or ``profiles[i]`` (with its ``name`` when the file gives one)."""


@dataclass(frozen=True, slots=True)
class Match:
    """Where a profile applies; a missing key matches anything."""

    platform: str | None = None
    workspace: str | None = None
    channel: str | None = None

    @property
    def specificity(self) -> int:
        """A channel weighs more than a workspace, which weighs more than a platform."""
        return (4 if self.channel else 0) + (2 if self.workspace else 0) + (1 if self.platform else 0)

    def matches(self, key: ThreadKey) -> bool:
        if self.platform is not None and key.platform != self.platform:
            return False
        if self.workspace is not None and key.workspace != self.workspace:
            return False
        # A conversation scoped to a platform thread has channel "C1/<thread>": it is still in C1.
        return self.channel is None or key.channel == self.channel or key.channel.startswith(self.channel + "/")

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in (("platform", self.platform), ("workspace", self.workspace),
                                           ("channel", self.channel)) if v is not None]
        return " ".join(parts) or "everywhere"


@dataclass(frozen=True, slots=True)
class Profiles:
    """The defaults and the profiles of one file, as last loaded."""

    defaults: Profile
    rules: tuple[tuple[Match, Profile], ...] = ()
    source: str = ""
    """The file they came from ("" without ``PROFILES_FILE``)."""

    def resolve(self, key: ThreadKey) -> Profile:
        """The most specific matching profile (the first listed among equals), else the defaults."""
        best: Profile | None = None
        score = -1
        for match, profile in self.rules:
            if match.specificity > score and match.matches(key):
                best, score = profile, match.specificity
        return best or self.defaults
