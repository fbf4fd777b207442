"""``maas keys create/list/revoke/rotate`` on a SQLite key store (and once on DynamoDB, moto over HTTP): a key is
printed once and stored hashed, listings carry no secret, revoke and rotate are what the keyring then sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from functions.consumers.admission import Keyring
from functions.consumers.dynamo_store import DynamoStore
from functions.consumers.keys import key_hash, key_id_of, new_key
from functions.consumers.sqlite_store import SqliteStore
from functions.consumers.usage import Usage
from functions.core.errors import ForbiddenError, UnauthenticatedError
from maas.cli import main
from tests.consumers.dynamo import make_table


def maas(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture
def keys_db(tmp_path: Path) -> Path:
    return tmp_path / "keys.db"


def create(keys_db: Path | str, *args: str) -> str:
    """``maas keys create ARGS``: the key it printed (checked to be stdout's only line)."""
    result = maas("keys", "create", *args, "--keys", str(keys_db))
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    key = result.stdout.strip()
    assert key_id_of(key) is not None
    assert key not in result.stderr and f"maas_{key_id_of(key)}" in result.stderr
    return key


def keyring(keys_db: Path, wall_clock: float | None = None) -> Keyring:
    """A keyring that reads the store on every lookup; ``wall_clock`` fixes the moment keys are checked at."""
    if wall_clock is None:
        return Keyring(SqliteStore(keys_db), ttl=0)
    return Keyring(SqliteStore(keys_db), ttl=0, wall_clock=lambda: wall_clock)


def stored_bytes(keys_db: Path) -> bytes:
    """Every byte of the SQLite file and its write-ahead log."""
    return b"".join(path.read_bytes() for path in sorted(keys_db.parent.glob(keys_db.name + "*")))


def test_create_prints_the_key_once_and_stores_only_its_hash(keys_db: Path) -> None:
    key = create(keys_db, "team-a", "--models", "cancer-mlp,diabetes-mlp", "--rate-limit", "2.5",
                 "--daily-quota", "100", "--expires", "0.5")
    grant = keyring(keys_db).authenticate(key)
    assert (grant.consumer, grant.models, grant.rate_limit, grant.daily_quota) == (
        "team-a", ("cancer-mlp", "diabetes-mlp"), 2.5, 100)
    [record] = SqliteStore(keys_db).list_keys()
    assert record.expires_at is not None and record.expires_at == record.created_at + 43200  # half a day
    data = stored_bytes(keys_db)
    assert key_hash(key).encode() in data  # the right bytes were read
    assert key.encode() not in data and key.split("_", 2)[2].encode() not in data


def test_defaults_are_every_model_no_limits_and_no_expiry(keys_db: Path) -> None:
    key = create(keys_db, "svc@team-b")
    grant = keyring(keys_db).authenticate(key)
    assert (grant.consumer, grant.models, grant.rate_limit, grant.daily_quota) == ("svc@team-b", ("*",), None, None)
    assert SqliteStore(keys_db).list_keys()[0].expires_at is None


@pytest.mark.parametrize(("args", "named"), [
    (["bad name"], "CONSUMER"), (["-x"], "No such option"), (["a", "--models", "m/1"], "--models"),
    (["a", "--models", ","], "--models"), (["a", "--rate-limit", "0"], "--rate-limit"),
    (["a", "--rate-limit", "-1"], "--rate-limit"), (["a", "--rate-limit", "nan"], "--rate-limit"),
    (["a", "--daily-quota", "0"], "--daily-quota"), (["a", "--daily-quota", "1.5"], "--daily-quota"),
    (["a", "--expires", "0"], "--expires"), (["a", "--expires", "-3"], "--expires"),
])
def test_bad_values_are_usage_errors_and_store_nothing(keys_db: Path, args: list[str], named: str) -> None:
    result = maas("keys", "create", *args, "--keys", str(keys_db))
    assert result.exit_code == 2 and result.stdout == ""
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert named in line
    assert not keys_db.exists()


def test_list_names_keys_by_id_and_state_never_by_key_or_hash(keys_db: Path) -> None:
    first = create(keys_db, "team-a", "--models", "cancer-mlp", "--rate-limit", "5", "--daily-quota", "10")
    second = create(keys_db, "team-b")
    assert maas("keys", "revoke", f"maas_{key_id_of(second)}", "--keys", str(keys_db)).exit_code == 0
    table = maas("keys", "list", "--keys", str(keys_db))
    assert table.exit_code == 0
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if "│ maas_" in line}
    assert set(rows) == {f"maas_{key_id_of(first)}", f"maas_{key_id_of(second)}"}
    assert "active" in rows[f"maas_{key_id_of(first)}"] and "cancer-mlp" in rows[f"maas_{key_id_of(first)}"]
    assert "revoked" in rows[f"maas_{key_id_of(second)}"]
    listed = maas("keys", "list", "--json", "--keys", str(keys_db))
    records = {r["id"]: r for r in json.loads(listed.stdout)}
    assert records[f"maas_{key_id_of(first)}"]["state"] == "active"
    assert records[f"maas_{key_id_of(first)}"]["rate_limit"] == 5 and records[f"maas_{key_id_of(first)}"][
        "models"] == ["cancer-mlp"]
    assert records[f"maas_{key_id_of(second)}"]["state"] == "revoked"
    assert all("key_hash" not in r for r in records.values())
    for key in (first, second):
        for output in (table.output, listed.output):
            assert key not in output and key_hash(key) not in output and key.split("_", 2)[2] not in output


def test_revoke_takes_the_id_with_or_without_prefix_and_the_keyring_refuses_the_key(keys_db: Path) -> None:
    key = create(keys_db, "team-a")
    key_id = key_id_of(key)
    assert key_id is not None
    assert keyring(keys_db).authenticate(key).consumer == "team-a"
    done = maas("keys", "revoke", key_id, "--keys", str(keys_db))
    assert done.exit_code == 0 and f"revoked key maas_{key_id}" in done.stderr
    with pytest.raises(ForbiddenError, match="revoked"):
        keyring(keys_db).authenticate(key)
    again = maas("keys", "revoke", f"maas_{key_id}", "--keys", str(keys_db))
    assert again.exit_code == 0 and "already revoked" in again.stderr
    unknown = maas("keys", "revoke", "maas_" + new_key()[1], "--keys", str(keys_db))
    assert unknown.exit_code == 3 and "no key maas_" in unknown.stderr
    malformed = maas("keys", "revoke", "maas_NOTANID", "--keys", str(keys_db))
    assert malformed.exit_code == 2 and "KEY-PREFIX" in malformed.stderr


def test_commands_other_than_create_want_an_existing_store(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    for args in (["keys", "list"], ["keys", "revoke", "abcd2345"], ["keys", "rotate", "abcd2345"], ["usage"]):
        result = maas(*args, "--keys", str(missing))
        assert result.exit_code == 3 and f"no key store at {missing}" in result.stderr, args
    assert not missing.exists()


def test_the_store_comes_from_maas_keys_when_not_given(keys_db: Path) -> None:
    result = maas("keys", "create", "team-env", env={"MAAS_KEYS": str(keys_db)})
    assert result.exit_code == 0
    assert keyring(keys_db).authenticate(result.stdout.strip()).consumer == "team-env"


def test_rotate_makes_a_new_key_alike_and_keeps_the_old_one_for_the_grace_period(keys_db: Path) -> None:
    old = create(keys_db, "team-r", "--models", "diabetes-mlp", "--rate-limit", "3", "--daily-quota", "50",
                 "--expires", "30")
    old_id = key_id_of(old)
    rotated = maas("keys", "rotate", f"maas_{old_id}", "--grace", "1", "--keys", str(keys_db))
    assert rotated.exit_code == 0 and rotated.stdout.count("\n") == 1
    new = rotated.stdout.strip()
    assert key_id_of(new) not in (None, old_id) and new not in rotated.stderr and old not in rotated.output
    grant = keyring(keys_db).authenticate(new)
    assert (grant.consumer, grant.models, grant.rate_limit, grant.daily_quota) == ("team-r", ("diabetes-mlp",), 3, 50)
    assert keyring(keys_db).authenticate(old).consumer == "team-r"  # still in its grace period
    store = SqliteStore(keys_db)
    old_record, new_record = store.find_key(str(old_id)), store.find_key(str(key_id_of(new)))
    assert old_record is not None and new_record is not None
    assert old_record.replaced_by == new_record.key_id and new_record.replaced_by is None
    assert old_record.expires_at is not None and new_record.expires_at is not None
    assert old_record.expires_at == new_record.created_at + 3600 < new_record.expires_at  # an hour's grace
    later = old_record.expires_at + 1
    with pytest.raises(ForbiddenError, match="expired"):
        keyring(keys_db, wall_clock=later).authenticate(old)
    assert keyring(keys_db, wall_clock=later).authenticate(new).consumer == "team-r"
    twice = maas("keys", "rotate", str(old_id), "--keys", str(keys_db))
    assert twice.exit_code == 16 and "already rotated" in twice.stderr and twice.stdout == ""
    listed = {r["id"]: r["state"] for r in json.loads(maas("keys", "list", "--json", "--keys", str(keys_db)).stdout)}
    assert listed[f"maas_{old_id}"] == "rotated" and listed[f"maas_{key_id_of(new)}"] == "active"


def test_rotate_with_no_grace_ends_the_old_key_now_and_refuses_dead_keys(keys_db: Path) -> None:
    old = create(keys_db, "team-z")
    rotated = maas("keys", "rotate", str(key_id_of(old)), "--grace", "0", "--keys", str(keys_db))
    assert rotated.exit_code == 0
    with pytest.raises(ForbiddenError, match="expired"):
        keyring(keys_db).authenticate(old)
    assert keyring(keys_db).authenticate(rotated.stdout.strip()).consumer == "team-z"
    revoked = create(keys_db, "team-z")
    assert maas("keys", "revoke", str(key_id_of(revoked)), "--keys", str(keys_db)).exit_code == 0
    for dead, state in ((old, "expired"), (revoked, "revoked")):
        refused = maas("keys", "rotate", str(key_id_of(dead)), "--keys", str(keys_db))
        assert refused.exit_code == 16 and f"is {state}" in refused.stderr and refused.stdout == ""
    assert maas("keys", "rotate", str(key_id_of(old)), "--grace", "-1", "--keys", str(keys_db)).exit_code == 2
    assert len(SqliteStore(keys_db).list_keys()) == 3  # nothing made by the refusals
    with pytest.raises(UnauthenticatedError):
        keyring(keys_db).authenticate(new_key()[0])


def test_keys_and_usage_on_a_dynamodb_table(dynamo_env: str) -> None:
    table = make_table(dynamo_env)
    uri = f"dynamodb://{table}"
    key = create(uri, "team-d", "--daily-quota", "7")
    rotated = maas("keys", "rotate", str(key_id_of(key)), "--grace", "0", "--keys", uri)
    assert rotated.exit_code == 0
    listed = maas("keys", "list", "--json", "--keys", uri)
    states = {r["id"]: (r["state"], r["daily_quota"]) for r in json.loads(listed.stdout)}
    new_id = key_id_of(rotated.stdout.strip())
    assert states == {f"maas_{key_id_of(key)}": ("expired", 7), f"maas_{new_id}": ("active", 7)}
    ring = Keyring(DynamoStore(table), ttl=0)
    with pytest.raises(ForbiddenError):
        ring.authenticate(key)
    assert ring.authenticate(rotated.stdout.strip()).daily_quota == 7
    DynamoStore(table).add_usage([Usage("team-d", "m", "1", "2026-12-04", requests=2, rows=3, latency_ms=4.0)] * 2)
    usage = json.loads(maas("usage", "--json", "--consumer", "team-d", "--since", "2026-12-01", "--keys", uri).stdout)
    assert [(r["requests"], r["rows"], r["mean_latency_ms"]) for r in usage] == [(4, 6, 2.0)]


@pytest.mark.parametrize("option", [("--rate-limit", "1e19"), ("--rate-limit", "1e-300"),
                                    ("--daily-quota", str(10**19)), ("--expires", "1e9")])
def test_limits_and_dates_no_store_can_hold_are_usage_errors(keys_db: Path, option: tuple[str, str]) -> None:
    created = maas("keys", "create", "bounded", *option, "--keys", str(keys_db))
    assert created.exit_code == 2 and option[0] in created.output and created.stdout == ""
