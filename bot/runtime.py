"""Wiring: settings -> Redis client -> store -> assistant backends -> core."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.assistants.base import Assistant
from bot.config import ConfigError, Settings
from bot.core import Core
from bot.crypto import Sealer
from bot.metrics import Metrics
from bot.profiles import LiveProfiles, load_profiles
from bot.safety import Safety, parse_patterns
from bot.store import RedisClient, Store, make_redis
from bot.store.installations import Installations
from bot.store.pacing import SharedLanes


def redis_for(settings: Settings) -> RedisClient:
    return make_redis(settings.redis_url, cluster=settings.redis_cluster,
                      max_connections=settings.redis_max_connections)


def make_store(settings: Settings, redis: RedisClient) -> Store:
    return Store(
        redis,
        prefix=settings.redis_prefix,
        idle_ttl=settings.thread_idle_ttl,
        lock_ttl=settings.lock_ttl,
        dedupe_ttl=settings.dedupe_ttl,
        keep_items=settings.keep_turns,
        cluster=settings.redis_cluster,
    )


def make_assistant(settings: Settings, store: Store, name: str | None = None) -> Assistant:
    backend = name or settings.assistant_backend
    if backend == "chat":
        from bot.assistants.chat import ChatAssistant

        return ChatAssistant(settings, store.chat, notes=store.notes)
    from bot.assistants.conversations import ConversationsAssistant

    return ConversationsAssistant(settings, notes=store.notes)


def make_safety(settings: Settings, metrics: Metrics) -> Safety:
    """Redaction always (when patterns are set); moderation through the moderation endpoint when asked for."""
    patterns = parse_patterns(settings.redact_patterns)
    if settings.moderation == "off":
        return Safety(patterns=patterns, metrics=metrics)
    from bot.assistants.moderation import Moderator

    moderator = Moderator(settings)
    return Safety(settings.moderation, patterns, moderate=moderator, metrics=metrics, close=moderator.close)


@dataclass
class Runtime:
    settings: Settings
    redis: RedisClient
    store: Store
    assistant: Assistant
    core: Core
    metrics: Metrics
    others: dict[str, Assistant] = field(default_factory=dict)
    pacer: SharedLanes | None = None
    """Platform rate-limit lanes shared by every worker (the adapters pace their calls with them)."""
    installations: Installations | None = None
    """Slack installations and install states (OAuth), when ``TOKEN_ENCRYPTION_KEY`` is set."""

    async def close(self) -> None:
        await self.core.close()
        await self.core.safety.close()
        for assistant in (self.assistant, *self.others.values()):
            await assistant.close()
        await self.store.close()


def build_runtime(settings: Settings, *, redis: RedisClient | None = None) -> Runtime:
    """Everything a command needs; call :meth:`Runtime.close` when done."""
    client = redis if redis is not None else redis_for(settings)
    store = make_store(settings, client)
    assistant = make_assistant(settings, store)
    others: dict[str, Assistant] = {}
    if settings.openai_api_key or settings.openai_base_url:
        for name in ("conversations", "chat"):
            if name != assistant.name:
                others[name] = make_assistant(settings, store, name)
    metrics = Metrics()
    profiles = LiveProfiles(settings, load_profiles(settings))
    core = Core(store, assistant, settings, metrics=metrics, others=others, profiles=profiles,
                safety=make_safety(settings, metrics))
    return Runtime(settings, client, store, assistant, core, metrics, others, pacer=SharedLanes(client, store.keys),
                   installations=make_installations(settings, client, store))


def make_installations(settings: Settings, redis: RedisClient, store: Store) -> Installations | None:
    """The installations port, sealed with ``TOKEN_ENCRYPTION_KEY``; None without a usable key (the Slack
    adapter then refuses to start with OAuth on, and ``doctor`` says what is wrong with the key)."""
    key = settings.token_encryption_key.get_secret_value() if settings.token_encryption_key else ""
    try:
        return Installations(redis, store.keys, Sealer(key)) if key.strip() else None
    except ConfigError:
        return None


__all__ = ["Runtime", "build_runtime", "make_store", "redis_for"]
