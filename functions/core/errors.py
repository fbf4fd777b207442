"""The project's error types. HTTP status codes are mapped from these in one place (the API layer)."""

from __future__ import annotations


class MaasError(Exception):
    """Base class: every error carries a short machine-readable code and a human message."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(MaasError):
    """An unknown model, version, alias or store key."""

    code = "not_found"


class InvalidNameError(NotFoundError):
    """A model, version or alias name that cannot exist in the store (path-like, too long, bad characters)."""

    code = "invalid_name"


class AlreadyExistsError(MaasError):
    """A write that would overwrite an immutable object."""

    code = "already_exists"


class IntegrityError(MaasError):
    """An artifact whose size, checksum or content does not match its manifest or policy."""

    code = "integrity"


class StoreUnavailableError(MaasError):
    """The store cannot be reached or refused the request."""

    code = "store_unavailable"


class InvalidInputError(MaasError):
    """Client input that does not match the model's schema; `index` names the offending instance."""

    code = "invalid_input"

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message if index is None else f"instance {index}: {message}")
        self.index = index


class ModelUnavailableError(MaasError):
    """A model version exists but cannot be loaded (integrity failure, unreadable artifact)."""

    code = "model_unavailable"
