"""A bot worker process for scale-out tests: handles a list of messages through its own core.

Usage: ``python -m tests.support.worker CONFIG_JSON``; CONFIG has ``settings`` (overrides)
and ``messages`` (``[platform, workspace, channel, user, text, message_id]``). Prints one
JSON line per message: ``{"id": ..., "answer": text | null, "error": class name | null}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from bot.config import load_settings
from bot.domain import Incoming, ThreadKey
from bot.errors import BotError
from bot.runtime import build_runtime


async def handle_all(config: dict[str, Any]) -> list[dict[str, Any]]:
    runtime = build_runtime(load_settings(_env_file=None, **config["settings"]))
    start = asyncio.Event()

    async def one(spec: list[str]) -> dict[str, Any]:
        platform, workspace, channel, user, text, message_id = spec
        await start.wait()
        try:
            key = ThreadKey(platform, workspace, channel, user)
            answer = await runtime.core.handle(Incoming(key, text, message_id))
        except BotError as exc:
            return {"id": message_id, "answer": None, "error": type(exc).__name__}
        return {"id": message_id, "answer": answer.text if answer else None, "error": None}

    tasks = [asyncio.create_task(one(spec)) for spec in config["messages"]]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start.set()
    results = await asyncio.gather(*tasks)
    await runtime.close()
    return results


def main() -> None:
    for result in asyncio.run(handle_all(json.loads(sys.argv[1]))):
        print(json.dumps(result))


if __name__ == "__main__":
    main()
