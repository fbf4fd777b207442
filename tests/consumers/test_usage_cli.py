"""``maas usage``: stored usage rows as a table with a total line, or JSON, filtered by consumer, model and day."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from functions.consumers.sqlite_store import SqliteStore
from functions.consumers.usage import Usage
from maas.cli import main
from maas.usage import parse_since


def maas(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def keys_db(tmp_path: Path) -> Path:
    store = SqliteStore(tmp_path / "keys.db")
    store.add_usage([
        Usage("team-a", "cancer-mlp", "1", "2026-12-02", requests=3, rows=7, latency_ms=30.0),
        Usage("team-a", "cancer-mlp", "1", "2026-12-03", requests=4, rows=4, client_errors=1, latency_ms=20.0),
        Usage("team-b", "diabetes-mlp", "2", "2026-12-03", requests=2, rows=1, throttled=1, latency_ms=5.0),
        Usage("team-b", "diabetes-mlp", "-", "2026-12-04", requests=1, server_errors=1, latency_ms=2.0),
    ])
    store.add_usage([Usage("team-a", "cancer-mlp", "1", "2026-12-03", requests=1, rows=2, latency_ms=20.0)])
    return tmp_path / "keys.db"


def cells(text: str) -> list[list[str]]:
    """The rows of a printed table, as lists of cell texts."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]


def test_the_table_has_one_row_per_day_consumer_model_version_and_a_total(keys_db: Path) -> None:
    result = maas("usage", "--keys", str(keys_db))
    assert result.exit_code == 0, result.output
    rows = cells(result.stdout)
    assert rows == [
        ["2026-12-02", "team-a", "cancer-mlp", "1", "3", "7", "0", "0", "0", "10.0"],
        ["2026-12-03", "team-a", "cancer-mlp", "1", "5", "6", "1", "0", "0", "8.0"],
        ["2026-12-03", "team-b", "diabetes-mlp", "2", "2", "1", "0", "1", "0", "2.5"],
        ["2026-12-04", "team-b", "diabetes-mlp", "-", "1", "0", "0", "0", "1", "2.0"],
        ["total", "", "", "", "11", "14", "1", "1", "1", "7.0"],
    ]
    header = next(line for line in result.stdout.splitlines() if "requests" in line)
    for column in ("client errors", "throttled", "server errors", "mean latency ms"):
        assert column in header


def test_filters_and_json(keys_db: Path) -> None:
    result = maas("usage", "--keys", str(keys_db), "--consumer", "team-b", "--since", "2026-12-04", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {"consumer": "team-b", "model": "diabetes-mlp", "version": "-", "day": "2026-12-04", "requests": 1, "rows": 0,
         "client_errors": 0, "throttled": 0, "server_errors": 1, "latency_ms": 2.0, "mean_latency_ms": 2.0}]
    by_model = json.loads(maas("usage", "--keys", str(keys_db), "--model", "cancer-mlp", "--json").stdout)
    assert [(r["day"], r["requests"]) for r in by_model] == [("2026-12-02", 3), ("2026-12-03", 5)]


def test_nothing_recorded_is_one_line_and_success(keys_db: Path) -> None:
    for args in (["--consumer", "nobody"], ["--since", "2027-01-01"]):
        result = maas("usage", "--keys", str(keys_db), *args)
        assert result.exit_code == 0 and result.stdout.startswith("no usage recorded in ")
        assert args[1] in result.stdout and result.stdout.count("\n") == 1
    assert json.loads(maas("usage", "--keys", str(keys_db), "--model", "x", "--json").stdout) == []


@pytest.mark.parametrize("bad", ["2026-13-01", "yesterday", "12/04/2026", "-1d", "7days"])
def test_a_bad_since_is_a_usage_error(keys_db: Path, bad: str) -> None:
    result = maas("usage", "--keys", str(keys_db), "--since", bad)
    assert result.exit_code == 2 and "--since" in result.stderr and "YYYY-MM-DD" in result.stderr


def test_since_takes_a_day_or_days_ago() -> None:
    today = date(2026, 12, 4)
    assert parse_since("2026-11-30", today) == "2026-11-30"
    assert parse_since("7d", today) == "2026-11-27"
    assert parse_since("0d", today) == "2026-12-04"
