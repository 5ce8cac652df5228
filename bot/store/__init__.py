"""The store: the only code that talks to Redis (thread map, turns, locks, index, limits, chat history)."""

from bot.store.chat_history import ChatHistory, Message
from bot.store.connect import RedisClient, StoreError, make_redis, unavailable
from bot.store.lock import Duplicate, LockBusy, RedisLock
from bot.store.records import (
    Admission,
    FinishedTurn,
    Mapping,
    Recorded,
    ReleaseMode,
    SharedRecord,
    ThreadRecord,
    Tombstone,
)
from bot.store.server_notes import ServerNotes
from bot.store.store import Store

__all__ = [
    "Admission",
    "ChatHistory",
    "Duplicate",
    "FinishedTurn",
    "LockBusy",
    "Mapping",
    "Message",
    "Recorded",
    "RedisClient",
    "RedisLock",
    "ReleaseMode",
    "ServerNotes",
    "SharedRecord",
    "Store",
    "StoreError",
    "ThreadRecord",
    "Tombstone",
    "make_redis",
    "unavailable",
]
