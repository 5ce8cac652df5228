"""The profiles in use, reloaded without a restart: on SIGHUP, and when the file changes.

The file is looked at (one ``stat``) at most every :data:`CHECK_EVERY` seconds, when a message
resolves its profile; reading and parsing run in a thread (:func:`asyncio.to_thread`), never in the
event loop. A reload that fails (bad YAML, an unknown key, an unreadable instructions file, a missing
environment variable) is one ERROR line, and the last good profiles stay in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator

from bot.config import Settings
from bot.domain import ThreadKey
from bot.profiles.load import ProfileError, read_profiles
from bot.profiles.model import Profile, Profiles

log = logging.getLogger("threadkeeper.profiles")

CHECK_EVERY = 5.0
"""Seconds between looks at the file's modification time."""

Stamp = tuple[int, int, int] | None
"""What identifies one version of the file: (mtime in ns, size, inode); None when it cannot be read."""


def _stamp(path: str) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class LiveProfiles:
    """The current :class:`Profiles`, and the means to reload them."""

    def __init__(self, settings: Settings, profiles: Profiles, *, check_every: float = CHECK_EVERY) -> None:
        self.settings = settings
        self.profiles = profiles
        self.check_every = check_every
        self.path = settings.profiles_file or ""
        self._stamp: Stamp = _stamp(self.path) if self.path else None
        self._checked = time.monotonic()
        self._check: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self.reloads = 0
        """Reload attempts finished so far (good or bad)."""
        self._done = asyncio.Condition()

    async def resolve(self, key: ThreadKey) -> Profile:
        """The profile for ``key``, after a look at the file if one is due."""
        if self.path and time.monotonic() - self._checked >= self.check_every:
            await self._look()
        return self.profiles.resolve(key)

    async def _look(self) -> None:
        """One look at a time: messages arriving together share it."""
        if self._check is None or self._check.done():
            self._checked = time.monotonic()
            self._check = asyncio.ensure_future(self._look_once())
        await asyncio.shield(self._check)

    async def _look_once(self) -> None:
        stamp = await asyncio.to_thread(_stamp, self.path)
        if stamp != self._stamp:
            await self.reload("the file changed")

    async def reload(self, why: str) -> bool:
        """Read the file again; True if the new profiles are in use. A bad file keeps the old ones."""
        if not self.path:
            return False
        async with self._lock:
            stamp = await asyncio.to_thread(_stamp, self.path)
            try:
                profiles = await asyncio.to_thread(read_profiles, self.path, self.settings)
            except ProfileError as exc:
                log.error("PROFILES_FILE: %s: %s; keeping the profiles loaded before (%s)", self.path, exc, why)
                ok = False
            else:
                self.profiles = profiles
                log.info("reloaded %d profile(s) from %s (%s)", len(profiles.rules), self.path, why)
                ok = True
            self._stamp = stamp  # a bad version is reported once, not at every look
            self._checked = time.monotonic()
        async with self._done:
            self.reloads += 1
            self._done.notify_all()
        return ok

    async def reloaded(self, count: int) -> None:
        """Until ``count`` reloads have finished (tests, and whoever sent a SIGHUP)."""
        async with self._done:
            await self._done.wait_for(lambda: self.reloads >= count)

    @contextlib.contextmanager
    def on_sighup(self) -> Iterator[None]:
        """Reload on SIGHUP while inside (where the loop can handle signals; elsewhere a no-op)."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[bool]] = set()

        def handler() -> None:
            task = loop.create_task(self.reload("SIGHUP"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        installed = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, handler)
            installed = True
        try:
            yield
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGHUP)
