"""Rollouts on an alias: a shadow candidate and a sticky A/B split, kept in the alias record beside its target.

    models/NAME/aliases/ALIAS.json   {"version", "previous", "updated_at",
                                      "shadow": {"candidate", "rate", "started_at"},     (optional)
                                      "split": {"version", "percent", "started_at"}}     (optional)

They are read with the alias (same record, same stale-while-revalidate refresh), so a request sees one
consistent ``Route``: the version to run, a sticky share of it sent to the split version, and maybe a candidate
to run after the answer. A malformed shadow or split setting is ignored with a log line: the alias keeps
serving its target.

Assignment to the split is sticky per routing key: a key's bucket is a hash of the model, alias, split version
and key, so the same key always gets the same version, and raising the percentage only moves keys that were on
the target (lowering it only moves keys back). Without a key each request draws at random.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from functions.core.errors import NotFoundError, RolloutError
from functions.core.names import check_version
from functions.core.records import RecordError, parse_record

BUCKETS = 10_000
"""Split resolution: 0.01 percent."""


def _version(label: str, version: str) -> None:
    try:
        check_version(version)
    except NotFoundError as exc:
        raise RecordError(label, exc.message) from None


@dataclass(frozen=True, kw_only=True)
class ShadowSetting:
    """Run ``candidate`` on a share ``rate`` of the alias's requests, after each live answer, and compare."""

    candidate: str
    rate: float = 1.0
    started_at: str

    def __post_init__(self) -> None:
        _version("candidate", self.candidate)
        if not (math.isfinite(self.rate) and 0.0 < self.rate <= 1.0):
            raise RecordError("rate", f"must be more than 0 and at most 1, got {self.rate}")

    def sampled(self) -> bool:
        """Whether this request is shadowed (a draw against ``rate``)."""
        return self.rate >= 1.0 or random.random() < self.rate


@dataclass(frozen=True, kw_only=True)
class SplitSetting:
    """Send ``percent`` of the alias's traffic to ``version``, sticky per routing key."""

    version: str
    percent: float
    started_at: str

    def __post_init__(self) -> None:
        _version("version", self.version)
        if not (math.isfinite(self.percent) and 0.0 < self.percent <= 100.0):
            raise RecordError("percent", f"must be more than 0 and at most 100, got {self.percent}")

    def takes(self, name: str, alias: str, key: str | None) -> bool:
        """Whether a request with routing ``key`` (None: random) goes to the split version."""
        threshold = round(self.percent * BUCKETS / 100)
        if key is None:
            return random.randrange(BUCKETS) < threshold
        return bucket(name, alias, self.version, key) < threshold


def bucket(name: str, alias: str, version: str, key: str) -> int:
    """The routing key's bucket (0 to BUCKETS-1) for a split of ``name``'s ``alias`` to ``version``."""
    digest = hashlib.blake2b(f"{name}\0{alias}\0{version}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True)
class Route:
    """Where an alias sends requests: its target version, and the rollouts on it (each may be None)."""

    version: str
    alias: str | None = None
    """The alias record this came from (None: the model has no alias record and serves its latest version)."""
    shadow: ShadowSetting | None = None
    split: SplitSetting | None = None
    ignored: tuple[str, ...] = ()
    """Why a rollout present in the record was left out (malformed)."""

    def pick(self, name: str, key: str | None) -> str:
        """The version that serves a request with routing ``key``: the split version for its share, else the
        target."""
        split = self.split
        if split is not None and self.alias is not None and split.takes(name, self.alias, key):
            return split.version
        return self.version


def new_shadow(candidate: str, rate: float, started_at: str) -> ShadowSetting:
    """A shadow setting from command-line values (RolloutError names a bad one)."""
    try:
        return ShadowSetting(candidate=candidate, rate=rate, started_at=started_at)
    except (RecordError, NotFoundError) as exc:
        raise RolloutError(f"shadow {exc}") from None


def new_split(version: str, percent: float, started_at: str) -> SplitSetting:
    """A split setting from command-line values, its share rounded to the 0.01 % the routing resolves
    (RolloutError names a bad one, including a share that would round to nothing)."""
    if math.isfinite(percent) and 0.0 < percent < 100.0 / BUCKETS * 0.5:
        raise RolloutError(f"split percent must be at least {100 / BUCKETS:g} (the routing's resolution), "
                           f"got {percent:g}")
    try:
        return SplitSetting(version=version, percent=round(percent, 2) if math.isfinite(percent) else percent,
                            started_at=started_at)
    except (RecordError, NotFoundError) as exc:
        raise RolloutError(f"split {exc}") from None


def parse_rollouts(value: dict[str, object]) -> tuple[ShadowSetting | None, SplitSetting | None, list[str]]:
    """The shadow and split settings of an alias document (a dict), and why each one that is present but
    malformed was ignored."""
    problems: list[str] = []
    shadow: ShadowSetting | None = None
    split: SplitSetting | None = None
    try:
        if value.get("shadow") is not None:
            shadow = parse_record(ShadowSetting, value["shadow"], "shadow")
    except RecordError as exc:
        problems.append(str(exc))
    try:
        if value.get("split") is not None:
            split = parse_record(SplitSetting, value["split"], "split")
    except RecordError as exc:
        problems.append(str(exc))
    return shadow, split, problems
