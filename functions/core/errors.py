"""The project's error types and the one table that maps each to its HTTP status and its CLI exit code.

``http_status(exc)`` and ``exit_code(exc)`` walk the exception's MRO, so a subclass inherits its parent's row
unless it has its own. Nothing else maps errors to statuses or exit codes.
"""

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


class StoreTimeoutError(StoreUnavailableError):
    """The store did not answer within the request budget."""

    code = "store_timeout"


class KeyStoreUnavailableError(StoreUnavailableError):
    """The store of API keys, limit counters and usage (a SQLite file, a DynamoDB table) cannot be used."""

    code = "key_store_unavailable"


class InvalidInputError(MaasError):
    """Client input that does not match the model's schema; `index` names the offending instance."""

    code = "invalid_input"

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message if index is None else f"instance {index}: {message}")
        self.index = index


class ModelUnavailableError(MaasError):
    """A model version exists but cannot be loaded (integrity failure, unreadable artifact)."""

    code = "model_unavailable"


class RequestError(MaasError):
    """A request the server cannot read at all: malformed JSON, wrong content type, body too large."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class UnreadableInputError(MaasError):
    """The whole input file cannot be read; retrying will not help."""

    code = "unreadable_input"


class PermanentError(MaasError):
    """A problem with a batch input that retrying cannot fix."""

    code = "permanent"


class DeadlineError(MaasError):
    """Not enough time left to finish; the input is handed back for a retry with nothing written."""

    code = "deadline"


class HostProcessError(MaasError):
    """A batch host process (functions/batch/hostwork.py) died or could not start; the run stopped."""

    code = "host_process"


class UnknownRecipeError(MaasError):
    """The recipe name or file does not exist, defines no recipe, or declares an invalid config (e.g. pruning)."""

    code = "unknown_recipe"


class InvalidSourceError(MaasError):
    """``maas import``: a source model or option that cannot be imported (corrupt or unsupported file, operator
    domain outside the allow-list, a shape maas cannot serve, labels that do not match the outputs, an option
    that must be given); nothing was published."""

    code = "invalid_source"


class BuildFailedError(MaasError):
    """The build stopped at a gate; nothing was published."""

    code = "build_failed"


class PortInUseError(MaasError):
    """``maas serve`` cannot bind its address: another process holds the port."""

    code = "port_in_use"


class ApiUnreachableError(MaasError):
    """The prediction API cannot be reached (connection refused, DNS, timeout)."""

    code = "api_unreachable"


class ApiRejectedError(MaasError):
    """The prediction API answered 4xx: the request was wrong (``status`` is the HTTP status)."""

    code = "api_rejected"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ApiFailedError(ApiRejectedError):
    """The prediction API answered 5xx: the service could not answer (``status`` is the HTTP status)."""

    code = "api_failed"


class ApiRefusedError(ApiRejectedError):
    """The prediction API refused the caller's credentials (401 or 403: no key, an unknown, revoked or expired
    key, one that does not cover the model, or an IAM/JWT refusal)."""

    code = "api_refused"


class ApiLimitedError(ApiRejectedError):
    """The prediction API answered 429 (a rate limit or daily quota); ``retry_after`` is whole seconds to wait
    (None when the answer named none)."""

    code = "api_limited"

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(status, message)
        self.retry_after = retry_after


class RolloutError(MaasError):
    """A shadow or split that cannot be set (a version the alias already serves, a rate or percent out of range)."""

    code = "invalid_rollout"


class PromotionRefusedError(MaasError):
    """``maas promote --require-agreement``: the candidate's shadow report does not meet the bar."""

    code = "promotion_refused"


class UnauthenticatedError(MaasError):
    """No API key, or one that is not a key of this service (HTTP 401)."""

    code = "unauthenticated"


class ForbiddenError(MaasError):
    """An API key that was revoked, has expired, or does not cover the model asked for (HTTP 403)."""

    code = "forbidden"


class LimitExceededError(MaasError):
    """A consumer over its rate limit or daily quota (HTTP 429); ``retry_after`` is whole seconds to wait."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int, code: str = "rate_limited") -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)
        self.code = code


ERROR_TABLE: dict[type[MaasError], tuple[int, int]] = {
    # error type: (HTTP status, CLI exit code)
    MaasError: (500, 1),
    UnknownRecipeError: (404, 2),
    NotFoundError: (404, 3),
    InvalidNameError: (404, 3),
    BuildFailedError: (500, 4),
    StoreUnavailableError: (503, 5),
    StoreTimeoutError: (503, 5),
    KeyStoreUnavailableError: (503, 5),
    ApiUnreachableError: (502, 5),
    AlreadyExistsError: (409, 6),
    IntegrityError: (503, 7),
    ModelUnavailableError: (503, 7),
    InvalidInputError: (422, 8),
    RequestError: (400, 8),
    ApiRejectedError: (502, 8),
    ApiFailedError: (502, 9),
    ApiRefusedError: (502, 16),
    ApiLimitedError: (502, 17),
    UnreadableInputError: (422, 10),
    PermanentError: (422, 10),
    PortInUseError: (500, 11),
    DeadlineError: (503, 12),
    HostProcessError: (500, 1),
    InvalidSourceError: (422, 13),
    RolloutError: (422, 14),
    PromotionRefusedError: (409, 15),
    UnauthenticatedError: (401, 16),
    ForbiddenError: (403, 16),
    LimitExceededError: (429, 17),
}
"""Every error type's HTTP status and CLI exit code; README's "Exit codes" documents the second column."""


def _row(exc: BaseException) -> tuple[int, int] | None:
    for cls in type(exc).__mro__:
        row = ERROR_TABLE.get(cls)
        if row is not None:
            return row
    return None


def http_status(exc: BaseException) -> int:
    """The HTTP status for an error: its own ``status`` for request errors, else its table row (500 if none)."""
    if isinstance(exc, RequestError):
        return exc.status
    row = _row(exc)
    return row[0] if row else 500


def exit_code(exc: BaseException) -> int:
    """The CLI exit code for an error: its table row, 1 for anything not in the table."""
    row = _row(exc)
    return row[1] if row else 1
