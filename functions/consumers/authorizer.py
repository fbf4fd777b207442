"""The HTTP API's Lambda authorizer for ``auth: apiKey`` stages (payload 2.0, simple responses).

It authenticates: the key in ``x-api-key`` (or ``Authorization: Bearer``) is looked up by its hash, in memory
for ``MAAS_KEYS_CACHE_SECONDS`` and in the key table, and checked for revocation and expiry. API Gateway caches
its answer per key for the stage's ``cacheSeconds``. It always authorizes and passes its verdict as context:
the consumer and what its key allows, or why the key was refused. The API function then answers the refusal
with the exact 401/403 JSON body (HTTP APIs cannot shape an authorizer's denial), and checks the model scope,
rate limit and daily quota on every request, since a cached answer is reused for every path and for a whole
cache period. When the key table cannot be read and the key is not
known, the invocation fails (API Gateway answers 500 and caches nothing). The key never leaves this function;
logs name keys by their public id only.
"""

from __future__ import annotations

from typing import Any

from functions.consumers.admission import Keyring, key_from_headers
from functions.consumers.store import keys_uri, open_store
from functions.core.errors import ForbiddenError, MaasError, StoreUnavailableError
from functions.core.telemetry import log

_keyring: Keyring | None = None


def keyring() -> Keyring:
    """The container's keyring, made on the first invocation."""
    global _keyring
    if _keyring is None:
        from functions.consumers.gate import cache_seconds

        _keyring = Keyring(open_store(keys_uri()), ttl=cache_seconds())
    return _keyring


def verdict(event: dict[str, Any], ring: Keyring) -> dict[str, Any]:
    """The simple response for one authorizer event."""
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    try:
        grant = ring.authenticate(key_from_headers(headers))
    except StoreUnavailableError as exc:
        # Nothing is known about this key. Raising makes API Gateway answer 500 without caching anything, so
        # the next request asks again; an answer would be cached for the whole cache period.
        log("ERROR", "key store unavailable", error=exc.message)
        raise
    except MaasError as exc:
        denied = "forbidden" if isinstance(exc, ForbiddenError) else "unauthenticated"
        return {"isAuthorized": True, "context": {"denied": denied, "reason": exc.message}}
    return {"isAuthorized": True, "context": grant.to_context()}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    return verdict(event, keyring())
