"""``maas promote`` and ``maas rollback``: move a model's aliases (ending the alias's shadow and split).

``promote --require-agreement X`` is the promotion gate: the shadow report of the new version against the
alias's current target must show an agreement of at least X over at least ``--min-compared`` compared requests,
else nothing moves (exit 15, with the figures).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from maas.common import open_store, store_option
from maas.rollouts import ended, source_option

if TYPE_CHECKING:
    from functions.core.catalog import AliasRecord
    from functions.core.store import Store

DEFAULT_MIN_COMPARED = 100


@click.command()
@click.argument("name")
@click.argument("version")
@click.option("--alias", required=True, help="Alias to move, e.g. prod or staging.")
@click.option("--require-agreement", type=click.FloatRange(0.0, 1.0), default=None, metavar="X",
              help="Refuse unless the shadow report of VERSION against the alias's target shows an agreement "
                   "of at least X (0 to 1).")
@click.option("--min-compared", type=click.IntRange(min=0), default=None,
              help=f"With --require-agreement: the fewest compared requests the report must have "
                   f"(default {DEFAULT_MIN_COMPARED}).")
@source_option
@store_option
def promote(name: str, version: str, alias: str, require_agreement: float | None, min_compared: int | None,
            source: str | None, store_uri: str | None) -> None:
    """Point ALIAS of model NAME at VERSION."""
    from functions.core import catalog

    if require_agreement is None and (min_compared is not None or source is not None):
        raise click.UsageError("--min-compared and --source set the promotion gate: give --require-agreement too")
    store = open_store(store_uri)
    before = _current(store, name, alias)
    if require_agreement is not None:
        gate(store, name, version, alias, before, require_agreement,
             DEFAULT_MIN_COMPARED if min_compared is None else min_compared, source)
    record = catalog.promote(store, name, version, alias)
    click.echo(f"{name} {alias} -> {record.version}" + (f" (was {record.previous[0]})" if record.previous else "")
               + "".join(f"; {note}" for note in ended(before, record)))


def gate(store: Store, name: str, version: str, alias: str, current: AliasRecord | None, require_agreement: float,
         min_compared: int, source: str | None) -> None:
    """Refuse the promotion (PromotionRefusedError, with the figures) unless VERSION's shadow report against the
    alias's target meets the bar; prints the verdict when it does."""
    import math

    from functions.core import catalog
    from functions.core.errors import NotFoundError, PromotionRefusedError, RolloutError
    from functions.core.shadow_report import meets
    from maas.rollouts import load_report

    if not (math.isfinite(require_agreement) and 0.0 <= require_agreement <= 1.0):
        raise RolloutError(f"--require-agreement must be from 0 to 1, got {require_agreement}")
    if min_compared < 0:
        raise RolloutError(f"--min-compared must be 0 or more, got {min_compared}")
    if not store.exists(f"{catalog.version_prefix(name, version)}/manifest.json"):
        raise NotFoundError(f"model {name!r} has no version {version!r}")
    if current is None:
        raise PromotionRefusedError(f"{name} {alias} has no target to compare version {version} against: "
                                    "promote without --require-agreement first")
    if current.version == version:
        click.echo(f"{name} {alias} already serves version {version}: nothing to compare")
        return
    report = load_report(store, name, alias, version, current.version, source)
    ok, reason = meets(report, require_agreement, min_compared)
    if not ok:
        raise PromotionRefusedError(f"{name} {alias} stays at version {current.version}: {reason} "
                                    f"(records: {report['source']}" + (f"; {report['hint']}" if report.get("hint")
                                                                       else "") + ")")
    click.echo(f"gate passed: {reason}")


def _current(store: Store, name: str, alias: str) -> AliasRecord | None:
    """The alias record before a move (None when absent or unreadable: promote repairs it)."""
    from functions.core import catalog
    from functions.core.errors import IntegrityError

    try:
        return catalog.read_alias(store, name, alias)
    except IntegrityError:
        return None


@click.command()
@click.argument("name")
@click.option("--alias", required=True, help="Alias to move back to its previous version.")
@store_option
def rollback(name: str, alias: str, store_uri: str | None) -> None:
    """Return ALIAS of model NAME to the version it pointed at before; clears any split (and shadow) on it."""
    from functions.core import catalog

    store = open_store(store_uri)
    before = _current(store, name, alias)
    record = catalog.rollback(store, name, alias)
    click.echo(f"{name} {alias} -> {record.version}" + "".join(f"; {note}" for note in ended(before, record)))
