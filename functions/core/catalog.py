"""Models, versions and aliases over a Store, laid out as in the store format.

    models/NAME/versions/VERSION/manifest.json   (+ variant files, card, plots, vocab)
    models/NAME/aliases/ALIAS.json               {"version", "previous", "updated_at", "shadow"?, "split"?}

An alias may carry rollouts (``functions.core.rollout``): a shadow candidate and a sticky split. Moving the
alias (promote, rollback) ends both: they compared against, or split from, the target that was replaced.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from functions.core.errors import IntegrityError, NotFoundError, RolloutError
from functions.core.manifest import MANIFEST_FILE, Manifest
from functions.core.names import check_alias, check_model_name, check_version
from functions.core.records import RecordError, parse_record
from functions.core.rollout import Route, ShadowSetting, SplitSetting, parse_rollouts
from functions.core.store import Store

log = logging.getLogger("maas.catalog")

DEFAULT_ALIAS = "prod"
ALIAS_HISTORY = 20


@dataclass(frozen=True, kw_only=True)
class AliasRecord:
    """Where an alias points, where it pointed before (most recent first) and its rollouts; unknown keys are
    ignored, and so is a malformed rollout (``ignored`` says why: the alias keeps serving its target)."""

    IGNORE_UNKNOWN = True

    version: str
    previous: list[str] = field(default_factory=list)
    updated_at: str
    shadow: ShadowSetting | None = None
    split: SplitSetting | None = None
    ignored: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for label, version in (("version", self.version), *(("previous", v) for v in self.previous)):
            try:
                check_version(version)
            except NotFoundError as exc:
                raise RecordError(label, exc.message) from None

    @classmethod
    def from_json(cls, data: bytes | str) -> AliasRecord:
        """Parse an alias document (RecordError names the problem); a malformed rollout is left out and named in
        ``ignored``, never an error."""
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise RecordError("", f"not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            return parse_record(cls, value)  # names the problem
        shadow, split, problems = parse_rollouts(value)
        core = {k: v for k, v in value.items() if k not in ("shadow", "split", "ignored")}
        record = parse_record(cls, core)
        return replace(record, shadow=shadow, split=split, ignored=tuple(problems)) \
            if shadow or split or problems else record

    def to_dict(self) -> dict[str, object]:
        """The record as written on disk (rollouts only when set)."""
        document = asdict(self)
        del document["ignored"]
        return {k: v for k, v in document.items() if v is not None or k not in ("shadow", "split")}

    def route(self, alias: str, ignored: tuple[str, ...] = ()) -> Route:
        """Where requests to this alias go."""
        return Route(self.version, alias, self.shadow, self.split, ignored)


def version_prefix(name: str, version: str) -> str:
    """Store prefix of a version's files."""
    return f"models/{check_model_name(name)}/versions/{check_version(version)}"


def alias_key(name: str, alias: str) -> str:
    """Store key of an alias record."""
    return f"models/{check_model_name(name)}/aliases/{check_alias(alias)}.json"


def list_models(store: Store) -> list[str]:
    """Names of models with at least one folder in the store."""
    return [name for name in store.list_children("models") if _valid_name(name)]


def list_versions(store: Store, name: str) -> list[str]:
    """Versions of ``name`` in ascending order (folders named by positive integers)."""
    children = store.list_children(f"models/{check_model_name(name)}/versions")
    return sorted((v for v in children if v.isdigit() and not v.startswith("0")), key=int)


def latest_version(store: Store, name: str) -> str:
    """The highest published version of ``name``."""
    versions = list_versions(store, name)
    if not versions:
        raise NotFoundError(f"model {name!r} has no published version")
    return versions[-1]


def read_manifest(store: Store, name: str, version: str) -> Manifest:
    """Load and validate a version's manifest."""
    data = store.get_bytes(f"{version_prefix(name, version)}/{MANIFEST_FILE}")
    try:
        manifest = Manifest.from_json(data)
    except RecordError as exc:
        raise IntegrityError(f"manifest of {name} version {version} is invalid: {exc}") from None
    if (manifest.name, manifest.version) != (name, version):
        raise IntegrityError(f"manifest of {name} version {version} claims to be {manifest.name!r} version "
                             f"{manifest.version!r}")
    return manifest


def read_alias(store: Store, name: str, alias: str) -> AliasRecord | None:
    """The alias record, or None if the alias was never set; IntegrityError if the record is unreadable."""
    try:
        data = store.get_bytes(alias_key(name, alias))
    except NotFoundError:
        return None
    try:
        return AliasRecord.from_json(data)
    except RecordError as exc:
        raise IntegrityError(f"alias {alias!r} of model {name!r} is unusable: {exc}") from None


def read_aliases(store: Store, name: str) -> tuple[dict[str, AliasRecord], dict[str, str]]:
    """All aliases of ``name``: the readable records, and the reason each unreadable one is unusable."""
    records: dict[str, AliasRecord] = {}
    broken: dict[str, str] = {}
    for child in store.list_children(f"models/{check_model_name(name)}/aliases"):
        alias = child.removesuffix(".json")
        if not (child.endswith(".json") and _valid_alias(alias)):
            continue
        try:
            record = read_alias(store, name, alias)
        except IntegrityError as exc:
            log.warning("%s", exc.message)
            broken[alias] = exc.message
            continue
        if record is not None:
            records[alias] = record
    return records, broken


def list_aliases(store: Store, name: str) -> dict[str, AliasRecord]:
    """The usable aliases of ``name`` (an unreadable alias is left out, and logged)."""
    return read_aliases(store, name)[0]


def listing(store: Store) -> list[dict[str, Any]]:
    """Every model with at least one version: its name, versions and usable aliases (``GET /v1/models``)."""
    models: list[dict[str, Any]] = []
    for name in list_models(store):
        versions = list_versions(store, name)
        if versions:
            aliases = {alias: record.version for alias, record in list_aliases(store, name).items()}
            models.append({"name": name, "versions": versions, "aliases": aliases})
    return models


def resolve(store: Store, name: str, alias: str | None = None) -> str:
    """The version an alias points at; without an alias, ``prod`` if set, else the latest version."""
    return route(store, name, alias).version


def route(store: Store, name: str, alias: str | None = None) -> Route:
    """Where requests to an alias go (without an alias: ``prod`` if set, else the latest version, no rollouts).
    A malformed rollout is left out, and named in the route's ``ignored``."""
    chosen = alias or DEFAULT_ALIAS
    record = read_alias(store, name, chosen)
    if record is not None:
        return record.route(chosen, record.ignored)
    if alias is not None and alias != DEFAULT_ALIAS:
        raise NotFoundError(f"model {name!r} has no alias {alias!r}")
    return Route(latest_version(store, name))


def promote(store: Store, name: str, version: str, alias: str) -> AliasRecord:
    """Point ``alias`` at an existing ``version``, keeping the previous targets for rollback."""
    key = alias_key(name, alias)
    if not store.exists(f"{version_prefix(name, version)}/{MANIFEST_FILE}"):
        raise NotFoundError(f"model {name!r} has no version {version!r}")
    try:
        current = read_alias(store, name, alias)
    except IntegrityError:
        current = None  # an unreadable alias is repaired by pointing it somewhere
    previous = [] if current is None else \
        current.previous if current.version == version else [current.version, *current.previous]
    record = AliasRecord(version=version, previous=previous[:ALIAS_HISTORY], updated_at=_now())
    store.put_bytes(key, orjson.dumps(record.to_dict()))
    return record


def rollback(store: Store, name: str, alias: str) -> AliasRecord:
    """Return ``alias`` to the version it pointed at before its last move (ending its shadow and split)."""
    current = read_alias(store, name, alias)
    if current is None:
        raise NotFoundError(f"model {name!r} has no alias {alias!r}")
    if not current.previous:
        raise NotFoundError(f"alias {alias!r} of {name!r} has no previous version to roll back to")
    record = AliasRecord(version=current.previous[0], previous=current.previous[1:], updated_at=_now())
    store.put_bytes(alias_key(name, alias), orjson.dumps(record.to_dict()))
    return record


def set_shadow(store: Store, name: str, alias: str, shadow: ShadowSetting | None) -> tuple[AliasRecord, AliasRecord]:
    """Start (a setting) or end (None) the shadow of an existing alias; returns the records before and after."""
    current = _rollout_alias(store, name, alias, None if shadow is None else shadow.candidate)
    return current, _write_alias(store, name, alias, replace(current, shadow=shadow, ignored=()))


def set_split(store: Store, name: str, alias: str, split: SplitSetting | None) -> tuple[AliasRecord, AliasRecord]:
    """Start (a setting) or end (None) the split of an existing alias; returns the records before and after."""
    current = _rollout_alias(store, name, alias, None if split is None else split.version)
    return current, _write_alias(store, name, alias, replace(current, split=split, ignored=()))


def _rollout_alias(store: Store, name: str, alias: str, version: str | None) -> AliasRecord:
    """The alias a rollout goes on; ``version`` (the rollout's, if starting one) must exist and differ from its
    target. The target and history are kept as they are."""
    current = read_alias(store, name, alias)
    if current is None:
        if not list_versions(store, name):
            raise NotFoundError(f"model {name!r} not found")
        raise NotFoundError(f"model {name!r} has no alias {alias!r}: promote a version to it first")
    if version is not None:
        if not store.exists(f"{version_prefix(name, version)}/{MANIFEST_FILE}"):
            raise NotFoundError(f"model {name!r} has no version {version!r}")
        if version == current.version:
            raise RolloutError(f"alias {alias!r} of {name!r} already serves version {version}")
    return current


def _write_alias(store: Store, name: str, alias: str, record: AliasRecord) -> AliasRecord:
    store.put_bytes(alias_key(name, alias), orjson.dumps(record.to_dict()))
    return record


def now() -> str:
    """The time records are stamped with (UTC, seconds)."""
    return _now()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _valid_name(name: str) -> bool:
    try:
        check_model_name(name)
    except NotFoundError:
        return False
    return True


def _valid_alias(alias: str) -> bool:
    try:
        check_alias(alias)
    except NotFoundError:
        return False
    return True


def drift_report_key(name: str, version: str, day: str) -> str:
    """Where the drift job writes a version's report for ``day`` (YYYY-MM-DD)."""
    return f"{version_prefix(name, version)}/drift/{day}.json"


def put_drift_report(store: Store, name: str, version: str, day: str, report: bytes) -> str:
    """Write (or rewrite, when a day is run again) a drift report next to the version; returns its key."""
    key = drift_report_key(name, version, day)
    store.put_bytes(key, report)
    return key
