"""Per-place profiles (``PROFILES_FILE``): which model, instructions and tools answer where.

:mod:`~bot.profiles.model` holds the types, :mod:`~bot.profiles.load` reads and validates the YAML,
:mod:`~bot.profiles.live` keeps them current (SIGHUP, file changes). The core resolves a profile for
every message and hands it to the assistant, which sends it with the request.
"""

from bot.profiles.live import LiveProfiles
from bot.profiles.load import ProfileError, base_profile, load_profiles, parse_profiles, read_profiles
from bot.profiles.model import PLATFORMS, HostedTool, Match, McpServer, Profile, Profiles, SuggestedPrompt, Tool

__all__ = [
    "PLATFORMS", "HostedTool", "LiveProfiles", "Match", "McpServer", "Profile", "ProfileError", "Profiles",
    "SuggestedPrompt", "Tool", "base_profile", "load_profiles", "parse_profiles", "read_profiles",
]
