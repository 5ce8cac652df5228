"""Secrets kept at rest: what the bot must store but never show in clear (Slack installations' bot tokens).

``TOKEN_ENCRYPTION_KEY`` holds one or more Fernet keys (``Fernet.generate_key()``: 32 random bytes,
url-safe base64), comma separated, newest first: the first encrypts, every one of them decrypts, so a
key is rotated by putting the new one in front and dropping the old one once everything was written
again (a workspace's installation is rewritten when it installs the app again). Fernet is AES-128-CBC
with an HMAC-SHA256 over the whole token: a value altered in Redis, or read with a wrong key, fails
to decrypt instead of decrypting to something else.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.config import ConfigError

KEY_HINT = ("make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'")


class Undecryptable(Exception):
    """A sealed value that none of the keys opens (the key changed, or the value was altered)."""


class Sealer:
    """Encrypts and decrypts with the keys of ``TOKEN_ENCRYPTION_KEY``."""

    def __init__(self, keys: str) -> None:
        """``keys``: the setting's value; :class:`ConfigError` (one line, no key material) when it is unusable."""
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ConfigError(f"TOKEN_ENCRYPTION_KEY is empty; {KEY_HINT}")
        fernets = []
        for number, part in enumerate(parts, 1):
            try:
                fernets.append(Fernet(part.encode()))
            except ValueError:
                which = f"key {number} of {len(parts)}" if len(parts) > 1 else "it"
                raise ConfigError(f"TOKEN_ENCRYPTION_KEY is not a Fernet key ({which} is not 32 url-safe "
                                  f"base64-encoded bytes); {KEY_HINT}") from None
        self._fernet = MultiFernet(fernets)

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def open(self, sealed: bytes) -> bytes:
        try:
            return self._fernet.decrypt(sealed)
        except InvalidToken:
            raise Undecryptable("no key of TOKEN_ENCRYPTION_KEY opens it") from None


__all__ = ["KEY_HINT", "Sealer", "Undecryptable"]
