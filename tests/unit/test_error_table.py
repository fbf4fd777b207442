"""The one error table: every error type has a row, lookups walk the MRO, README documents the exit codes."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from functions.api.errors import status_of
from functions.core import errors
from functions.core.errors import (
    ERROR_TABLE,
    ApiFailedError,
    ApiRejectedError,
    InvalidNameError,
    MaasError,
    NotFoundError,
    PortInUseError,
    RequestError,
    UnreadableInputError,
    exit_code,
    http_status,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def _error_types() -> list[type[MaasError]]:
    return [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, MaasError) and cls.__module__ == errors.__name__]


def test_every_error_type_has_its_own_row() -> None:
    missing = [cls.__name__ for cls in _error_types() if cls not in ERROR_TABLE]
    assert missing == []


def test_error_types_live_in_one_module() -> None:
    """Error classes elsewhere are the same objects, re-exported, not look-alikes with their own codes."""
    from functions.batch import formats
    from model_build import gates, recipes

    assert formats.UnreadableInputError is UnreadableInputError
    assert gates.BuildFailedError is errors.BuildFailedError
    assert recipes.UnknownRecipeError is errors.UnknownRecipeError


def test_readme_exit_codes_kept() -> None:
    assert exit_code(errors.UnknownRecipeError("x")) == 2
    assert exit_code(NotFoundError("x")) == 3
    assert exit_code(InvalidNameError("x")) == 3
    assert exit_code(errors.BuildFailedError("x")) == 4
    assert exit_code(errors.StoreUnavailableError("x")) == 5
    assert exit_code(errors.AlreadyExistsError("x")) == 6
    assert exit_code(errors.IntegrityError("x")) == 7
    assert exit_code(ApiRejectedError(404, "x")) == 8
    assert exit_code(ApiFailedError(503, "x")) == 9
    assert exit_code(UnreadableInputError("x")) == 10
    assert exit_code(MaasError("x")) == 1


def test_port_in_use_has_a_code_of_its_own() -> None:
    others = {row[1] for cls, row in ERROR_TABLE.items() if cls is not PortInUseError}
    assert exit_code(PortInUseError("x")) not in others


def test_lookups_walk_the_mro_for_unlisted_subclasses() -> None:
    class GoneError(NotFoundError):
        pass

    class PlainError(MaasError):
        pass

    assert (http_status(GoneError("x")), exit_code(GoneError("x"))) == (404, 3)
    assert (http_status(PlainError("x")), exit_code(PlainError("x"))) == (500, 1)
    assert (http_status(ValueError("x")), exit_code(ValueError("x"))) == (500, 1)


@pytest.mark.parametrize(("exc", "status"), [
    (errors.InvalidInputError("x"), 422), (NotFoundError("x"), 404), (InvalidNameError("x"), 404),
    (errors.AlreadyExistsError("x"), 409), (errors.ModelUnavailableError("x"), 503),
    (errors.IntegrityError("x"), 503), (errors.StoreUnavailableError("x"), 503),
    (RequestError(413, "too_large", "x"), 413), (MaasError("x"), 500),
])
def test_api_status_comes_from_the_table(exc: MaasError, status: int) -> None:
    assert status_of(exc) == status == http_status(exc)


def test_readme_documents_every_exit_code() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("Exit codes"):]
    section = section[:section.index("\n\n")]
    documented = {int(n) for n in re.findall(r"\b(\d{1,2})\b", section)}
    assert {row[1] for row in ERROR_TABLE.values()} <= documented


def test_docs_table_matches_the_code() -> None:
    text = (README.parent / "docs" / "errors.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \| (\d+) \|", text, flags=re.MULTILINE)
    documented = {name: (status.strip(), int(code)) for name, status, code in rows}
    assert set(documented) == {cls.__name__ for cls in ERROR_TABLE}
    for cls, (status, code) in ERROR_TABLE.items():
        assert documented[cls.__name__][1] == code
        if documented[cls.__name__][0].isdigit():
            assert int(documented[cls.__name__][0]) == status
