"""One corrupt alias or manifest spoils nothing else: the catalog lists the rest, `maas models` shows it broken."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from functions.core import catalog
from functions.core.errors import IntegrityError
from functions.core.store import LocalStore
from maas.cli import main
from tests.reliability.artifacts import model_bytes, version_files


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    for name in ("fine", "aliased"):
        for key, data in version_files(name, model_bytes()).items():
            store.put_bytes(f"{catalog.version_prefix(name, '1')}/{key}", data)
    catalog.promote(store, "aliased", "1", "staging")
    store.put_bytes(catalog.alias_key("aliased", "prod"), b'{"version": 1, "updated_at": "t"}')
    return store


def test_a_corrupt_alias_is_unusable_with_a_reason_and_nothing_else(store: LocalStore) -> None:
    records, broken = catalog.read_aliases(store, "aliased")
    assert set(records) == {"staging"} and set(broken) == {"prod"}
    assert "version" in broken["prod"] and str(store.root) not in broken["prod"]
    with pytest.raises(IntegrityError, match="unusable"):
        catalog.resolve(store, "aliased", "prod")
    assert catalog.resolve(store, "aliased", "staging") == "1"
    assert catalog.promote(store, "aliased", "1", "prod").version == "1"  # promoting repairs it


def test_maas_models_shows_broken_entries_without_a_traceback(store: LocalStore) -> None:
    (store.root / "models" / "fine" / "versions" / "1" / "manifest.json").write_bytes(b"{")
    result = CliRunner().invoke(main, ["models", "--store", store.uri, "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in orjson.loads(result.output)}
    assert rows["aliased"]["aliases"] == {"prod": "broken", "staging": "1"}
    assert "invalid" in rows["fine"]["error"] and "Traceback" not in result.output
