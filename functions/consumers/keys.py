"""API keys: how they look, how they are made and hashed, and the record kept for each (never the key itself).

A key reads ``maas_<id>_<secret>``: ``id`` is 8 characters of base32 that name the key in listings, logs and
``maas keys revoke``; ``secret`` is 32 random bytes in URL-safe base64. Only the SHA-256 of the whole key is
stored: a key has 256 bits of entropy, so a fast hash is as safe as a slow one and costs microseconds per check.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

KEY_PREFIX = "maas_"
ALL_MODELS = "*"
_KEY = re.compile(r"maas_([a-z2-7]{8})_([A-Za-z0-9_-]{43})")
_KEY_ID = re.compile(r"(?:maas_)?([a-z2-7]{8})")
_CONSUMER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
KeyState = Literal["active", "revoked", "expired"]
MIN_RATE, MAX_RATE = 1 / 3600, 1_000_000.0
"""Rate limits a key may carry, in requests per second: one an hour to a million a second."""
MAX_QUOTA = 10**12
"""The largest daily quota (requests per UTC day)."""


def new_key() -> tuple[str, str]:
    """A fresh key and its public id."""
    key_id = base64.b32encode(secrets.token_bytes(5)).decode().lower()
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return f"{KEY_PREFIX}{key_id}_{secret}", key_id


def key_id_of(key: str) -> str | None:
    """The public id of a well-formed key, else None (nothing that is not a key is ever looked up)."""
    found = _KEY.fullmatch(key)
    return found.group(1) if found else None


def key_hash(key: str) -> str:
    """What the store keeps instead of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_key_id(text: str) -> str:
    """A key id as typed by an operator (``maas_abcd2345``, ``abcd2345``, or the whole key, whose id it takes);
    ValueError otherwise, never quoting more than an id's length of what was typed (it may be a key)."""
    text = text.strip()
    whole = key_id_of(text)
    if whole is not None:
        return whole
    found = _KEY_ID.fullmatch(text)
    if not found:
        shown = text if len(text) <= len(KEY_PREFIX) + 8 else text[:len(KEY_PREFIX) + 8] + "..."
        raise ValueError(f"{shown!r} is not a key id (maas_ and 8 characters a-z, 2-7, as `maas keys list` shows)")
    return found.group(1)


def shown_id(key_id: str) -> str:
    """The id as listings print it."""
    return f"{KEY_PREFIX}{key_id}"


def check_consumer(name: str) -> str:
    """A consumer id: letters, digits and ``. _ @ : + -``, up to 128 characters; ValueError otherwise."""
    if not _CONSUMER.fullmatch(name):
        raise ValueError(f"consumer {name!r} must be 1-128 letters, digits or . _ @ : + - (starting with a letter "
                         "or digit)")
    return name


def parse_models(text: str) -> tuple[str, ...]:
    """``m1,m2`` or ``*`` as the models a key covers; ValueError names a bad entry."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise ValueError("--models needs at least one model name, or * for all")
    if ALL_MODELS in names:
        return (ALL_MODELS,)
    for name in names:
        if not _MODEL.fullmatch(name):
            raise ValueError(f"{name!r} is not a model name")
    return names


@dataclass(frozen=True)
class KeyRecord:
    """What is stored for one key."""

    key_hash: str
    key_id: str
    consumer: str
    models: tuple[str, ...] = (ALL_MODELS,)
    rate_limit: float | None = None
    """requests per second (one-second windows), None: no limit"""
    daily_quota: int | None = None
    """requests per UTC day, None: no quota"""
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    replaced_by: str | None = None
    """the id of the key a rotation made; this one stays valid until ``expires_at`` (the grace period)"""

    def state(self, now: float | None = None) -> KeyState:
        now = time.time() if now is None else now
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def covers(self, model: str) -> bool:
        return self.models == (ALL_MODELS,) or model in self.models

    def revoked(self, now: float) -> KeyRecord:
        return replace(self, revoked_at=now)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (what both stores keep, and `maas keys list --json` prints without the hash)."""
        return {"key_hash": self.key_hash, "key_id": self.key_id, "consumer": self.consumer,
                "models": list(self.models), "rate_limit": self.rate_limit, "daily_quota": self.daily_quota,
                "created_at": self.created_at, "expires_at": self.expires_at, "revoked_at": self.revoked_at,
                "replaced_by": self.replaced_by}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyRecord:
        def number(name: str) -> float | None:
            value = data.get(name)
            return None if value is None else float(value)

        quota = data.get("daily_quota")
        models = data.get("models") or [ALL_MODELS]
        texts = (data["key_hash"], data["key_id"], data["consumer"])
        if not isinstance(models, list | tuple) or not all(isinstance(m, str) for m in (*models, *texts)):
            raise ValueError("a key record's hash, id, consumer and models are text")
        rate = number("rate_limit")
        if rate is not None and not MIN_RATE <= rate <= MAX_RATE:
            raise ValueError(f"a key's rate limit is {MIN_RATE:g} to {MAX_RATE:g} requests per second")
        if quota is not None and not 1 <= int(quota) <= MAX_QUOTA:
            raise ValueError(f"a key's daily quota is 1 to {MAX_QUOTA} requests")
        return cls(key_hash=str(data["key_hash"]), key_id=str(data["key_id"]), consumer=str(data["consumer"]),
                   models=tuple(models),
                   rate_limit=rate, daily_quota=None if quota is None else int(quota),
                   created_at=float(data.get("created_at") or 0.0), expires_at=number("expires_at"),
                   revoked_at=number("revoked_at"),
                   replaced_by=None if data.get("replaced_by") is None else str(data["replaced_by"]))
