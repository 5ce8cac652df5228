"""The process of the front-door bench's fakes and load driver: none of its CPU is the bot's.

One process (spawned by :class:`FakesProcess`) runs, on one event loop, the fake OpenAI, the fake
Slack (Web API and Socket Mode) and the fake Discord (REST and gateway) of ``tests/fakes``, and the
load driver: K users, each sending M messages one after another (the next once the previous answer
reads complete on the platform), all K starting together, or each at a random moment of a given time.
Messages reach the bot as the platform sends them: signed Events API requests to its HTTP port,
``events_api`` envelopes over its Socket Mode websocket, ``MESSAGE_CREATE`` dispatches over its gateway session.

The bench process talks to it over a pipe (:meth:`FakesProcess.call`); a phase returns one record
per message (:data:`RECORD`), the calls each fake received meanwhile and the CPU time this process spent on it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from bench.fake_proc import ChildProcess
from bench.front_fakes import Expected, TimedDiscord, TimedOpenAI, TimedSlack, Watch
from tests.fakes import discord_payloads as dp
from tests.fakes.slack_server import BOT_USER_ID, dm_event, event_envelope, mention_event, sign

JSON = dict[str, Any]
SECRET = "bench-front-door-secret"
"""The signing secret of every Slack app of the bench (ours and the baseline)."""
RECORD = ("user", "n", "new", "sent", "acked", "visible", "done", "first_output")
"""Fields of one message's record; times on the fakes' monotonic clock, ``None`` when it never happened."""
SETTLE_QUIET = 0.15
"""A phase ends when no fake has received a call for this long (trailing edits counted)."""


class Fakes:
    """The fakes and the driver, in the fakes' process."""

    def __init__(self) -> None:
        self.watch = Watch()
        self.openai = TimedOpenAI(turn_latency=0.0, meta_latency=0.0, context_limit=None)
        self.slack = TimedSlack(self.watch)
        self.discord = TimedDiscord(self.watch)
        self.http: aiohttp.ClientSession | None = None
        self._users: dict[str, JSON] = {}

    async def start(self) -> JSON:
        await self.openai.start()
        await self.slack.start()
        await self.discord.start()
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return {"openai": self.openai.base_url, "slack_api": self.slack.api_url,
                "discord_api": self.discord.api_base, "discord_token": self.discord.token}

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        await self.discord.stop()
        await self.slack.stop()
        await self.openai.stop()

    def totals(self) -> JSON:
        """Every call so far, per fake, and this process's CPU seconds (the bench takes differences)."""
        openai = Counter(f"{m} {p.split('/conv_')[0]}" for m, p in self.openai.calls)
        return {"slack": self.slack.counts(), "discord": self.discord.counts(), "openai": dict(openai),
                "slack_sockets": self.slack.socket_connections, "discord_identifies": len(self.discord.identifies),
                "cpu_s": time.process_time()}

    async def ready(self, door: str, sockets: int = 0, within: float = 30.0) -> None:
        """Until the bot's connection is up: its Socket Mode websocket (the fake's ``sockets + 1``-th: events go
        to the newest), or its gateway session."""
        if door == "slack_socket":
            await self.slack.wait_for(lambda: self.slack.open_sockets >= 1 and self.slack.socket_connections > sockets,
                                      within)
        elif door == "discord":
            await self.discord.wait_for(lambda: self.discord.connected >= 1, within)

    # ---- one message -------------------------------------------------------------------------
    def _discord_user(self, uid: str) -> JSON:
        if uid not in self._users:
            self._users[uid] = dp.user(dp.snowflake(), uid)
        return self._users[uid]

    async def _send(self, spec: JSON, uid: str, text: str) -> Expected:
        door, kind = spec["door"], spec["kind"]
        if door == "discord":
            author = self._discord_user(uid)
            channel = str(self.discord.dm_channel_for(author)["id"])
            entry = self.watch.expect(channel, self.openai.answer(text))
            await self.discord.dispatch("MESSAGE_CREATE", dp.message(channel, author, text))
            return entry
        user = f"U{uid}"
        if kind == "dm":
            channel = f"D{uid}"
            event = dm_event(text, user=user, channel=channel)
        else:
            channel = f"C{uid}"
            event = mention_event(f"<@{BOT_USER_ID}> {text}", user=user, channel=channel)
        entry = self.watch.expect(channel, self.openai.answer(text))
        envelope = event_envelope(event)
        if door == "slack_socket":
            await self.slack.push_event(envelope)
            return entry
        if self.http is None:
            raise RuntimeError("fakes not started")
        body = json.dumps(envelope)
        headers = {"Content-Type": "application/json", **sign(body, SECRET)}
        async with self.http.post(spec["url"], data=body.encode(), headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"the bot answered the event with HTTP {resp.status}")
        entry.acked = time.monotonic()
        return entry

    async def _one(self, spec: JSON, i: int, n: int, new: bool) -> tuple[Any, ...]:
        uid = f"{spec['tag']}x{i}"
        text = f"q{i}m{n}{spec['tag']}"
        entry = await self._send(spec, uid, text)
        try:
            await asyncio.wait_for(entry.finished.wait(), spec["timeout"])
        except TimeoutError:
            self.watch.pending.pop(next((c for c, e in self.watch.pending.items() if e is entry), ""), None)
        first = self.openai.first_output.pop(entry.text, None)
        return (i, n, new, entry.sent, entry.acked, entry.visible, entry.done, first)

    # ---- a phase: K users x M messages --------------------------------------------------------
    async def phase(self, spec: JSON) -> JSON:
        """``spec``: door, kind, tag (names the users), users, messages, first (index of the first message:
        0 means every user is new), timeout (per answer, seconds), url (HTTP doors), spread (optional: each user's
        first message goes out at a random moment of that many seconds; all at once when absent)."""
        # What the earlier phases left (every call recorded) lives on: out of the collector's sight, or its full
        # passes over it stop this process, and every answer in flight with it, for longer each level (up to
        # 120 ms late in a run, seen as the Discord streams level's first texts all 200 ms late).
        gc.collect()
        gc.freeze()
        before = self.totals()
        strays = self.watch.strays
        rows: list[tuple[Any, ...]] = []

        spread = float(spec.get("spread", 0.0))
        moments = random.Random(f"{spec['users']}/{spread}")  # the same start of each user at every door
        starts = [moments.uniform(0.0, spread) for _ in range(spec["users"])]

        async def user(i: int) -> None:
            if spread:
                await asyncio.sleep(starts[i])
            for n in range(spec["first"], spec["first"] + spec["messages"]):
                rows.append(await self._one(spec, i, n, n == 0))

        started = time.monotonic()
        await asyncio.gather(*(user(i) for i in range(spec["users"])))
        ended = time.monotonic()
        await self._settle()
        after = self.totals()
        return {"records": rows, "started": started, "ended": ended, "strays": self.watch.strays - strays,
                "calls": {name: _diff(after[name], before[name]) for name in ("slack", "discord", "openai")},
                "fakes_cpu_s": after["cpu_s"] - before["cpu_s"]}

    async def _settle(self, within: float = 10.0) -> None:
        deadline = time.monotonic() + within

        def total() -> int:
            return len(self.slack.calls) + len(self.discord.calls) + len(self.openai.calls)

        seen = total()
        while time.monotonic() < deadline:
            await asyncio.sleep(SETTLE_QUIET)
            now = total()
            if now == seen:
                return
            seen = now


def records(phase: JSON) -> list[JSON]:
    """A phase's records (:data:`RECORD`) as dicts."""
    return [dict(zip(RECORD, r, strict=True)) for r in phase["records"]]


def per_answer(counts: dict[str, int], answers: int) -> dict[str, float]:
    """Calls per answer, by name."""
    return {k: round(v / max(1, answers), 3) for k, v in sorted(counts.items())}


def _diff(after: JSON, before: JSON) -> JSON:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


async def _command(fakes: Fakes, cmd: tuple[Any, ...]) -> Any:
    name = cmd[0]
    if name == "start":
        return await fakes.start()
    if name == "latency":
        fakes.openai.turn_latency, fakes.openai.meta_latency = float(cmd[1]), float(cmd[2])
        return None
    if name == "pace":
        fakes.openai.pace(int(cmd[1]), float(cmd[2]), int(cmd[3]))
        return None
    if name == "ready":
        await fakes.ready(str(cmd[1]), *(int(n) for n in cmd[2:3]))
        return None
    if name == "phase":
        return await fakes.phase(dict(cmd[1]))
    if name == "totals":
        return fakes.totals()
    raise ValueError(f"unknown command {name!r}")


def _serve(conn: Connection) -> None:
    """The child process: one loop for the fakes and the driver; one command at a time from the pipe."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    fakes = Fakes()
    done = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def run(cmd: tuple[Any, ...]) -> None:
        try:
            conn.send(("ok", await _command(fakes, cmd)))
        except Exception as exc:
            conn.send(("error", repr(exc)))

    def on_command() -> None:
        try:
            cmd = conn.recv()
        except EOFError:
            done.set()
            return
        if cmd[0] == "stop":
            done.set()
            return
        task = loop.create_task(run(cmd))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_reader(conn.fileno(), on_command)
    loop.run_until_complete(done.wait())
    loop.remove_reader(conn.fileno())
    loop.run_until_complete(fakes.stop())
    loop.close()
    conn.close()


class FakesProcess(ChildProcess):
    """Handle on the fakes' process."""

    what = "fakes' process"

    def __init__(self) -> None:
        super().__init__()
        self.urls: JSON = {}

    def start(self) -> JSON:
        self._spawn(_serve, (), "bench-front-fakes")
        self.urls = dict(self.call("start"))
        return self.urls

    def call(self, *cmd: Any, within: float | None = 900.0) -> Any:
        return super().call(*cmd, within=within)
