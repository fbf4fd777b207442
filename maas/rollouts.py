"""``maas shadow start|stop|report`` and ``maas split``: rollouts on an alias (``functions.core.rollout``).

A shadow runs a candidate version on a share of the alias's requests after each live answer and records the
comparison; a split sends a sticky share of the alias's traffic to another version. Both live in the alias
record; ``maas promote`` and ``maas rollback`` end them. Bad values exit 14, unknown versions 3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from maas.common import open_store, store_option

if TYPE_CHECKING:
    from functions.core.catalog import AliasRecord
    from functions.core.store import Store

source_option = click.option(
    "--source", default=None, metavar="DIR|FILE|URI",
    help="Where the comparison records are: a folder (e.g. a `maas serve --capture` folder), a file or "
         "s3://BUCKET/PREFIX (default: the data bucket's shadow/NAME/ when MAAS_DATA_BUCKET is set, else "
         "$MAAS_CAPTURE_DIR/_shadow/NAME, else ./.maas/capture/_shadow/NAME).")


@click.group()
def shadow() -> None:
    """Run a candidate version beside an alias's live version and compare their answers."""


@shadow.command("start")
@click.argument("name")
@click.option("--candidate", required=True, help="The version to run in the shadow of the alias's target.")
@click.option("--alias", default="prod", show_default=True, help="The alias whose requests are shadowed.")
@click.option("--rate", default=1.0, show_default=True, type=float,
              help="Share of the alias's requests also sent to the candidate (more than 0, at most 1).")
@store_option
def shadow_start(name: str, candidate: str, alias: str, rate: float, store_uri: str | None) -> None:
    """Start (or replace) the shadow of NAME's ALIAS."""
    from functions.core import catalog, rollout

    setting = rollout.new_shadow(candidate, rate, catalog.now())
    before, after = catalog.set_shadow(open_store(store_uri), name, alias, setting)
    replaced = f"; replaces the shadow of version {before.shadow.candidate}" if before.shadow else ""
    click.echo(f"{name} {alias}: shadowing version {candidate} at rate {rate:g} beside live version "
               f"{after.version}{replaced}")


@shadow.command("stop")
@click.argument("name")
@click.option("--alias", default="prod", show_default=True, help="The alias whose shadow ends.")
@store_option
def shadow_stop(name: str, alias: str, store_uri: str | None) -> None:
    """End the shadow of NAME's ALIAS (no shadow: says so, exit 0)."""
    from functions.core import catalog

    before, _ = catalog.set_shadow(open_store(store_uri), name, alias, None)
    if before.shadow is not None:
        click.echo(f"{name} {alias}: stopped the shadow of version {before.shadow.candidate} "
                   f"(started {before.shadow.started_at})")
    elif any(problem.startswith("shadow") for problem in before.ignored):
        click.echo(f"{name} {alias}: removed a malformed shadow setting (it was ignored)")
    else:
        click.echo(f"{name} {alias}: no shadow to stop")


@shadow.command("report")
@click.argument("name")
@click.option("--alias", default="prod", show_default=True, help="The alias whose comparisons are reported.")
@click.option("--candidate", default=None,
              help="Candidate version (default: the alias's active shadow, else the latest in the records).")
@source_option
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Read at most this many (newest) records.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@store_option
def shadow_report_command(name: str, alias: str, candidate: str | None, source: str | None, limit: int | None,
                          as_json: bool, store_uri: str | None) -> None:
    """Agreement, errors, latency and input drift of a shadow candidate against the live version."""
    import orjson

    from functions.core import catalog

    store = open_store(store_uri)
    record = catalog.read_alias(store, name, alias)
    if candidate is None and record is not None and record.shadow is not None:
        candidate = record.shadow.candidate
    report = load_report(store, name, alias, candidate, None, source, limit=limit, drift=True)
    report["shadow"] = None if record is None or record.shadow is None else vars(record.shadow)
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render(report))


def load_report(store: Store, name: str, alias: str, candidate: str | None, live: str | None,
                source: str | None, *, limit: int | None = None, drift: bool = False) -> dict[str, Any]:
    """Read the comparison records (``source``, else the default place) and build the report; the default
    place not existing yet means no records. The report names its ``source``."""
    from pathlib import Path

    from functions.core import catalog
    from functions.core.errors import NotFoundError
    from functions.core.names import check_model_name
    from functions.core.settings import get_settings
    from functions.core.shadow_report import default_source, read_comparisons, shadow_report

    check_model_name(name)
    if not catalog.list_versions(store, name):
        raise NotFoundError(f"model {name!r} not found")
    settings = get_settings()
    where = source or default_source(name, settings)
    records: list[dict[str, Any]] = []
    if source is not None or where.startswith("s3://") or Path(where).exists():
        records = read_comparisons(where, name, alias, endpoint_url=settings.s3_endpoint_url, limit=limit)
    report = shadow_report(records, name=name, alias=alias, candidate=candidate, live=live,
                           store=store if drift else None)
    hint = None
    if not records and source is None:
        hint = ("nothing at the default place: pass --source (the `maas serve --capture` folder, a folder of "
                "records, or s3://DATA_BUCKET/shadow/NAME/) or set MAAS_CAPTURE_DIR / MAAS_DATA_BUCKET")
    return {**report, "source": where, "hint": hint}


def render(report: dict[str, Any]) -> str:
    """The report as a few readable lines."""
    head = f"{report['model']} {report['alias']}: candidate {report['candidate'] or '-'}"
    lives = ", ".join(report["live_versions"]) or report.get("live_version") or "-"
    active = report.get("shadow")
    note = "" if not active else (
        f" (shadow since {active['started_at']}, rate {active['rate']:g})" if active["candidate"] == report["candidate"]
        else f" (the active shadow is version {active['candidate']})")
    lines = [f"{head} vs live {lives}{note}", f"  source            {report['source']}"]
    if not report["requests"]:
        lines.append("  no comparison records yet" + (f" ({report['hint']})" if report.get("hint") else ""))
        return "\n".join(lines)
    errors = report["candidate_errors"]
    lines += [f"  requests          {report['requests']} ({report['first_time']} .. {report['last_time']})",
              f"  compared          {report['compared']} requests, {report['rows_compared']} rows",
              f"  agreement         {_figure(report['agreement'])} ({AGREEMENT.get(report['task'], '-')})",
              f"  candidate errors  {_percent(errors['rate'])}"
              + (" (" + ", ".join(f"{code} {count}" for code, count in errors["by_code"].items()) + ")"
                 if errors["by_code"] else "")]
    latency = report["latency"]
    lines.append(f"  latency p50       live {_ms(latency['live_p50_ms'])}, candidate {_ms(latency['candidate_p50_ms'])}"
                 + (f" (x{latency['ratio_p50']:.2f})" if latency["ratio_p50"] is not None else ""))
    lines.append(f"  latency p99       live {_ms(latency['live_p99_ms'])}, "
                 f"candidate {_ms(latency['candidate_p99_ms'])}")
    if report["task"] == "regression":
        lines.append(f"  difference        MAE {_figure(report['mae'])}, p99 {_figure(report['p99_abs_diff'])}, "
                     f"mean relative {_figure(report['mean_rel_diff'])}")
    elif report["task"] == "embedding":
        lines.append(f"  cosine            mean {_figure(report['mean_cosine'])}, p01 {_figure(report['p01_cosine'])}")
    elif report.get("confusion"):
        lines += _confusion(report["confusion"])
    for side, summary in (report.get("drift") or {}).items():
        lines.append(f"  drift ({side} {summary.get('version')}): {_drift(summary)}")
    return "\n".join(lines)


AGREEMENT = {"classification": "share of rows with the same label",
             "regression": "share of rows within 1% (or 1e-6)",
             "embedding": "share of rows with cosine >= 0.99"}


def _confusion(confusion: dict[str, dict[str, int]]) -> list[str]:
    labels = sorted({*confusion, *(label for row in confusion.values() for label in row)})
    width = max(len("live \\ candidate"), *(len(label) for label in labels))
    cells = [max(len(label), 6) for label in labels]
    lines = ["  confusion", "    " + "live \\ candidate".ljust(width) + "  "
             + "  ".join(label.rjust(cell) for label, cell in zip(labels, cells, strict=True))]
    for live in labels:
        row = confusion.get(live, {})
        lines.append("    " + live.ljust(width) + "  "
                     + "  ".join(str(row.get(label, 0)).rjust(cell) for label, cell in zip(labels, cells, strict=True)))
    return lines


def _drift(summary: dict[str, Any]) -> str:
    status = summary.get("status")
    if status in ("no_reference", "unavailable", "no_data"):
        return f"{status}" + (f": {summary['detail']}" if summary.get("detail") else "")
    over = summary.get("features_over_threshold") or []
    return (f"{status}, {summary.get('rows')} rows, max PSI {_figure(summary.get('max_psi'))}, "
            f"{len(over)} features over the threshold" + (f" ({', '.join(over[:5])})" if over else "")
            + f", prediction {summary.get('prediction_drift') or '-'}")


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


@click.command("split")
@click.argument("name")
@click.argument("version", required=False)
@click.option("--alias", required=True, help="The alias whose traffic is split, e.g. prod.")
@click.option("--percent", type=float, default=None,
              help="Share of the alias's traffic sent to VERSION (more than 0, at most 100).")
@click.option("--clear", is_flag=True, help="End the split: all traffic to the alias's target.")
@store_option
def split(name: str, version: str | None, alias: str, percent: float | None, clear: bool,
          store_uri: str | None) -> None:
    """Send PERCENT of NAME's ALIAS traffic to VERSION, sticky per routing key (x-maas-routing-key header, else
    the authenticated caller, else random per request); --clear ends it."""
    from functions.core import catalog, rollout

    if clear == (version is not None) or clear == (percent is not None):
        raise click.UsageError("give VERSION and --percent, or --clear alone")
    store = open_store(store_uri)
    if clear:
        before, after = catalog.set_split(store, name, alias, None)
        if before.split is not None:
            click.echo(f"{name} {alias}: split to version {before.split.version} ({before.split.percent:g}%) "
                       f"cleared; 100% -> version {after.version}")
        else:
            click.echo(f"{name} {alias}: no split to clear; 100% -> version {after.version}")
        return
    assert version is not None and percent is not None
    setting = rollout.new_split(version, percent, catalog.now())
    before, after = catalog.set_split(store, name, alias, setting)
    replaced = (f" (was {before.split.percent:g}% -> version {before.split.version})"
                if before.split is not None else "")
    applied = setting.percent
    click.echo(f"{name} {alias}: {applied:g}% -> version {version}, {round(100 - applied, 2):g}% -> version "
               f"{after.version}, sticky per routing key{replaced}")


def ended(before: AliasRecord | None, after: AliasRecord) -> list[str]:
    """What moving an alias ended: its shadow and split (``before`` had them, ``after`` has not)."""
    if before is None:
        return []
    notes = []
    if before.shadow is not None and after.shadow is None:
        notes.append(f"shadow of version {before.shadow.candidate} ended")
    if before.split is not None and after.split is None:
        notes.append(f"split to version {before.split.version} ({before.split.percent:g}%) cleared")
    return notes

