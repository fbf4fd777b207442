"""``maas shadow``, ``maas split``, the promotion gate and what promote, rollback and ``maas models`` say about
rollouts, on a real local store."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from functions.core import catalog
from functions.core.store import LocalStore
from maas.cli import main
from tests.rollouts.conftest import MODEL, comparison, lines

A, B = {"label": "benign", "probability": 0.9}, {"label": "malignant", "probability": 0.8}


def maas(store: LocalStore, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--store", store.uri])


def alias_document(store: LocalStore, alias: str = "prod") -> dict[str, object]:
    document = orjson.loads(store.get_bytes(catalog.alias_key(MODEL, alias)))
    assert isinstance(document, dict)
    return document


def write_comparisons(folder: Path, *, agreeing: int, disagreeing: int, errors: int = 0, live: str = "1",
                      candidate: str = "2") -> Path:
    """Comparison records of one row each, as ``maas serve --capture FOLDER`` leaves them."""
    records = [comparison(version=live, candidate=candidate, time=f"10:{i // 60:02d}:{i % 60:02d}.000",
                          live=[A], candidate_outputs=[A if i < agreeing else B], agree=[i < agreeing])
               for i in range(agreeing + disagreeing)]
    records += [comparison(version=live, candidate=candidate, time=f"11:00:{i:02d}.000", error="timeout")
                for i in range(errors)]
    path = folder / "_shadow" / MODEL / live / "2026-12-04.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(lines(records))
    return folder


def test_shadow_start_replace_and_stop(rollout_store: LocalStore) -> None:
    started = maas(rollout_store, "shadow", "start", MODEL, "--candidate", "2", "--rate", "0.5")
    assert started.exit_code == 0, started.output
    assert started.output.strip() == f"{MODEL} prod: shadowing version 2 at rate 0.5 beside live version 1"
    shadow = alias_document(rollout_store)["shadow"]
    assert isinstance(shadow, dict) and (shadow["candidate"], shadow["rate"]) == ("2", 0.5)
    replaced = maas(rollout_store, "shadow", "start", MODEL, "--candidate", "3", "--alias", "prod")
    assert "at rate 1 " in replaced.output and "replaces the shadow of version 2" in replaced.output
    assert catalog.route(rollout_store, MODEL, "prod").shadow.candidate == "3"  # type: ignore[union-attr]
    stopped = maas(rollout_store, "shadow", "stop", MODEL)
    assert stopped.exit_code == 0 and "stopped the shadow of version 3" in stopped.output
    assert "shadow" not in alias_document(rollout_store) and alias_document(rollout_store)["version"] == "1"
    again = maas(rollout_store, "shadow", "stop", MODEL)
    assert again.exit_code == 0 and "no shadow to stop" in again.output


def test_split_set_replace_and_clear(rollout_store: LocalStore) -> None:
    result = maas(rollout_store, "split", MODEL, "2", "--alias", "prod", "--percent", "10")
    assert result.exit_code == 0, result.output
    assert "10% -> version 2, 90% -> version 1" in result.output
    route = catalog.route(rollout_store, MODEL, "prod")
    assert route.split is not None and (route.split.version, route.split.percent) == ("2", 10.0)
    result = maas(rollout_store, "split", MODEL, "3", "--alias", "prod", "--percent", "100")
    assert "100% -> version 3, 0% -> version 1" in result.output and "(was 10% -> version 2)" in result.output
    cleared = maas(rollout_store, "split", MODEL, "--alias", "prod", "--clear")
    assert cleared.exit_code == 0 and "split to version 3 (100%) cleared; 100% -> version 1" in cleared.output
    assert "split" not in alias_document(rollout_store)
    assert "no split to clear" in maas(rollout_store, "split", MODEL, "--alias", "prod", "--clear").output
    rounded = maas(rollout_store, "split", MODEL, "2", "--alias", "prod", "--percent", "0.016")
    assert "0.02% -> version 2, 99.98% -> version 1" in rounded.output  # the share the routing applies


@pytest.mark.parametrize(("args", "code", "message"), [
    (["shadow", "start", MODEL, "--candidate", "2", "--rate", "0"], 14, "rate"),
    (["shadow", "start", MODEL, "--candidate", "2", "--rate", "1.5"], 14, "rate"),
    (["shadow", "start", MODEL, "--candidate", "2", "--rate", "nan"], 14, "rate"),
    (["shadow", "start", MODEL, "--candidate", "1"], 14, "already serves version 1"),
    (["shadow", "start", MODEL, "--candidate", "9"], 3, "no version '9'"),
    (["shadow", "start", MODEL, "--candidate", "2", "--alias", "staging"], 3, "no alias 'staging'"),
    (["shadow", "start", "no-such-model", "--candidate", "2"], 3, "model 'no-such-model' not found"),
    (["shadow", "report", "no-such-model"], 3, "model 'no-such-model' not found"),
    (["shadow", "stop", MODEL, "--alias", "staging"], 3, "no alias 'staging'"),
    (["split", MODEL, "2", "--alias", "prod", "--percent", "0"], 14, "percent"),
    (["split", MODEL, "2", "--alias", "prod", "--percent", "0.001"], 14, "at least 0.01"),
    (["split", MODEL, "2", "--alias", "prod", "--percent", "100.5"], 14, "percent"),
    (["split", MODEL, "9", "--alias", "prod", "--percent", "5"], 3, "no version '9'"),
    (["split", MODEL, "--alias", "prod", "--percent", "5"], 2, "VERSION and --percent, or --clear"),
    (["split", MODEL, "2", "--alias", "prod", "--clear"], 2, "VERSION and --percent, or --clear"),
    (["promote", MODEL, "2", "--alias", "prod", "--require-agreement", "1.5"], 2, "--require-agreement"),
    (["promote", MODEL, "2", "--alias", "prod", "--min-compared", "5"], 2, "give --require-agreement too"),
    (["promote", MODEL, "2", "--alias", "prod", "--source", "/tmp"], 2, "give --require-agreement too"),
    (["promote", MODEL, "9", "--alias", "prod", "--require-agreement", "0.9"], 3, "no version '9'"),
    (["shadow", "report", MODEL, "--source", "/no/such/folder"], 10, "does not exist"),
])
def test_bad_values_exit_with_one_line(rollout_store: LocalStore, args: list[str], code: int, message: str) -> None:
    result = maas(rollout_store, *args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert {"shadow", "split"}.isdisjoint(alias_document(rollout_store))  # nothing was set
    assert alias_document(rollout_store)["version"] == "1"


def test_promotion_gate_refuses_then_accepts_and_ends_the_rollouts(rollout_store: LocalStore, tmp_path: Path) -> None:
    source = write_comparisons(tmp_path / "capture", agreeing=114, disagreeing=6, errors=5)
    write_comparisons(tmp_path / "capture", agreeing=0, disagreeing=50, live="3")  # against another live version
    assert maas(rollout_store, "shadow", "start", MODEL, "--candidate", "2").exit_code == 0
    assert maas(rollout_store, "split", MODEL, "3", "--alias", "prod", "--percent", "10").exit_code == 0
    before = alias_document(rollout_store)

    refused = maas(rollout_store, "promote", MODEL, "2", "--alias", "prod", "--require-agreement", "0.99",
                   "--source", str(source))
    assert refused.exit_code == 15, refused.output
    assert "agreement 0.9500 over 120 compared requests" in refused.output
    assert "required: agreement >= 0.99 over >= 100" in refused.output and "stays at version 1" in refused.output
    assert alias_document(rollout_store) == before

    too_few = maas(rollout_store, "promote", MODEL, "2", "--alias", "prod", "--require-agreement", "0.9",
                   "--min-compared", "121", "--source", str(source))
    assert too_few.exit_code == 15 and "too few compared requests" in too_few.output
    assert alias_document(rollout_store) == before

    accepted = maas(rollout_store, "promote", MODEL, "2", "--alias", "prod", "--require-agreement", "0.95",
                    "--source", str(source))
    assert accepted.exit_code == 0, accepted.output
    assert "gate passed" in accepted.output and "agreement 0.9500 over 120" in accepted.output
    assert f"{MODEL} prod -> 2 (was 1); shadow of version 2 ended; split to version 3 (10%) cleared" in accepted.output
    after = alias_document(rollout_store)
    assert after["version"] == "2" and {"shadow", "split"}.isdisjoint(after)


def test_promotion_gate_with_no_records_refuses(rollout_store: LocalStore, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAAS_CAPTURE_DIR", str(tmp_path / "nothing-yet"))
    refused = maas(rollout_store, "promote", MODEL, "2", "--alias", "prod", "--require-agreement", "0")
    assert refused.exit_code == 15 and "over 0 compared requests" in refused.output
    assert alias_document(rollout_store)["version"] == "1"
    plain = maas(rollout_store, "promote", MODEL, "2", "--alias", "prod")  # no gate: as before
    assert plain.exit_code == 0 and plain.output.strip() == f"{MODEL} prod -> 2 (was 1)"


def test_rollback_says_it_cleared_the_split(rollout_store: LocalStore) -> None:
    assert maas(rollout_store, "promote", MODEL, "2", "--alias", "prod").exit_code == 0
    assert maas(rollout_store, "split", MODEL, "3", "--alias", "prod", "--percent", "25").exit_code == 0
    result = maas(rollout_store, "rollback", MODEL, "--alias", "prod")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{MODEL} prod -> 1; split to version 3 (25%) cleared"
    assert "split" not in alias_document(rollout_store)


def test_report_json_and_table(rollout_store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capture = write_comparisons(tmp_path / "capture", agreeing=30, disagreeing=10, errors=2)
    write_comparisons(capture, agreeing=5, disagreeing=0, candidate="3")  # older candidate records, left out
    assert maas(rollout_store, "shadow", "start", MODEL, "--candidate", "2").exit_code == 0
    monkeypatch.setenv("MAAS_CAPTURE_DIR", str(capture))  # the default source: its _shadow/NAME
    result = maas(rollout_store, "shadow", "report", MODEL, "--json")
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.output)
    assert (report["candidate"], report["live_version"], report["requests"], report["compared"]) == ("2", "1", 42, 40)
    assert report["agreement"] == 0.75 and report["confusion"] == {"benign": {"benign": 30, "malignant": 10}}
    assert report["candidate_errors"]["by_code"] == {"timeout": 2}
    assert report["source"] == str(capture / "_shadow" / MODEL) and report["shadow"]["candidate"] == "2"
    assert report["drift"]["live"]["version"] == "1" and report["drift"]["candidate"]["version"] == "2"
    table = maas(rollout_store, "shadow", "report", MODEL, "--source", str(capture)).output
    assert "candidate 2 vs live 1" in table and "agreement         0.7500" in table
    assert "candidate errors  4.8% (timeout 2)" in table and "confusion" in table
    assert "drift (candidate 2)" in table
    older = orjson.loads(maas(rollout_store, "shadow", "report", MODEL, "--candidate", "3", "--json").output)
    assert (older["candidate"], older["compared"], older["agreement"]) == ("3", 5, 1.0)
    older_table = maas(rollout_store, "shadow", "report", MODEL, "--candidate", "3").output
    assert "candidate 3 vs live 1 (the active shadow is version 2)" in older_table
    monkeypatch.setenv("MAAS_CAPTURE_DIR", str(tmp_path / "empty"))
    empty = maas(rollout_store, "shadow", "report", MODEL)
    assert empty.exit_code == 0 and "no comparison records yet" in empty.output


def test_models_lists_rollouts_and_a_malformed_one_as_ignored(rollout_store: LocalStore) -> None:
    assert maas(rollout_store, "shadow", "start", MODEL, "--candidate", "2", "--rate", "0.25").exit_code == 0
    assert maas(rollout_store, "split", MODEL, "3", "--alias", "prod", "--percent", "5").exit_code == 0
    document = {**alias_document(rollout_store), "version": "1"}
    malformed = {"candidate": "2", "rate": 7, "started_at": "t"}
    rollout_store.put_bytes(catalog.alias_key(MODEL, "staging"),
                            orjson.dumps({**document, "shadow": malformed, "split": None}))
    rows = orjson.loads(maas(rollout_store, "models", "--json").output)
    rollouts = rows[0]["rollouts"]
    assert rollouts["prod"]["shadow"]["candidate"] == "2" and rollouts["prod"]["split"]["percent"] == 5.0
    assert "shadow" not in rollouts["staging"] and "rate" in rollouts["staging"]["ignored"][0]
    table = maas(rollout_store, "models").output
    assert "prod -> 1 (shadow 2 at 0.25; split 5% -> 3)" in table
    assert "staging -> 1 (malformed rollout ignored)" in table
