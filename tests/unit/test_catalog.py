"""Aliases: promote keeps history, rollback walks it back, resolution falls back to latest."""

from __future__ import annotations

import pytest

from functions.core import catalog
from functions.core.errors import InvalidNameError, NotFoundError
from functions.core.store import LocalStore


@pytest.fixture
def store_with_versions(local_store: LocalStore) -> LocalStore:
    for version in ("1", "2", "3", "10"):
        local_store.put_new(f"models/m/versions/{version}/manifest.json", b"{}")
    return local_store


def test_versions_sort_numerically_and_latest_is_highest(store_with_versions: LocalStore) -> None:
    assert catalog.list_versions(store_with_versions, "m") == ["1", "2", "3", "10"]
    assert catalog.resolve(store_with_versions, "m") == "10"


def test_promote_and_rollback_history(store_with_versions: LocalStore) -> None:
    store = store_with_versions
    catalog.promote(store, "m", "1", "prod")
    catalog.promote(store, "m", "2", "prod")
    record = catalog.promote(store, "m", "3", "prod")
    assert record.version == "3"
    assert record.previous == ["2", "1"]
    assert catalog.resolve(store, "m") == "3"
    assert catalog.rollback(store, "m", "prod").version == "2"
    assert catalog.rollback(store, "m", "prod").version == "1"
    with pytest.raises(NotFoundError, match="no previous version"):
        catalog.rollback(store, "m", "prod")
    assert catalog.resolve(store, "m", "prod") == "1"


def test_promote_unknown_version_is_refused(store_with_versions: LocalStore) -> None:
    with pytest.raises(NotFoundError, match="no version '7'"):
        catalog.promote(store_with_versions, "m", "7", "prod")
    assert catalog.read_alias(store_with_versions, "m", "prod") is None


def test_unknown_alias_other_than_prod_is_an_error(store_with_versions: LocalStore) -> None:
    with pytest.raises(NotFoundError, match="no alias 'staging'"):
        catalog.resolve(store_with_versions, "m", "staging")


def test_aliases_are_independent(store_with_versions: LocalStore) -> None:
    catalog.promote(store_with_versions, "m", "2", "staging")
    catalog.promote(store_with_versions, "m", "1", "prod")
    assert {a: r.version for a, r in catalog.list_aliases(store_with_versions, "m").items()} == {
        "prod": "1", "staging": "2"}


@pytest.mark.parametrize("name", ["../m", "M", "m/../../x", "", "a" * 64, "%2e%2e", "m\x00"])
def test_path_like_model_names_are_rejected(store_with_versions: LocalStore, name: str) -> None:
    with pytest.raises(InvalidNameError):
        catalog.list_versions(store_with_versions, name)


@pytest.mark.parametrize("version", ["0", "01", "1.0", "../1", "-1", "latest"])
def test_bad_versions_are_rejected(store_with_versions: LocalStore, version: str) -> None:
    with pytest.raises(InvalidNameError):
        catalog.version_prefix("m", version)
