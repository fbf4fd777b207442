"""The ``maas`` command line. Heavy imports (torch, onnxruntime, boto3) happen inside the commands."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from functions.core.errors import (
    IntegrityError,
    MaasError,
    NotFoundError,
    StoreUnavailableError,
    exit_code,
)

if TYPE_CHECKING:
    from functions.core.store import Store

store_option = click.option("--store", "store_uri", metavar="URI", default=None,
                            help="file://PATH or s3://BUCKET/PREFIX (default: $MAAS_STORE, else file://./.maas/store)")


def _open_store(uri: str | None) -> Store:
    from functions.core.settings import get_settings
    from functions.core.store import open_store

    settings = get_settings()
    return open_store(uri or settings.store, endpoint_url=settings.s3_endpoint_url)


def _err(text: str) -> None:
    click.secho(text, fg="red", err=True)


class _Main(click.Group):
    """Turns the project's errors into one red line and a distinct exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MaasError as exc:
            _err(f"error: {exc.message}")
            sys.exit(exit_code(exc))
        except OSError as exc:
            _err(f"error: {exc}")
            sys.exit(exit_code(StoreUnavailableError(str(exc))))


@click.group(cls=_Main)
@click.version_option(package_name="maas")
def main() -> None:
    """maas: build, publish and manage models for serverless serving."""


@main.command()
@click.argument("recipe")
@store_option
@click.option("--quick", is_flag=True, help="Few epochs and short measurements: a smoke build in seconds.")
def build(recipe: str, store_uri: str | None, quick: bool) -> None:
    """Train, export, verify, quantize, gate, document and publish RECIPE (a built-in name or a .py file).

    Prints "NAME VERSION" on success.
    """
    from functions.core import catalog
    from model_build.recipes import load_recipe

    loaded = load_recipe(recipe)
    store = _open_store(store_uri)
    catalog.list_versions(store, loaded.name)  # fail fast on an unreachable store, before training
    from model_build.pipeline import build as run_build
    from model_build.pretrained import PretrainedEncoder, build_pretrained

    with _RichReporter() as reporter:
        if isinstance(loaded, PretrainedEncoder):
            manifest = build_pretrained(loaded, store, quick=quick, reporter=reporter)
        else:
            manifest = run_build(loaded, store, quick=quick, reporter=reporter)
    selected = manifest.variant(manifest.selected["cpu"])
    metric = selected.metrics.metric if selected.metrics else float("nan")
    click.echo(f"shipped {selected.name}, test {manifest.metric_name} {metric:.4f}; card: "
               f"{store.uri}/{catalog.version_prefix(manifest.name, manifest.version)}/card.md", err=True)
    click.echo(f"{manifest.name} {manifest.version}")


@main.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(store_uri: str | None, as_json: bool) -> None:
    """List models, versions, aliases and headline metrics."""
    from functions.core import catalog

    store = _open_store(store_uri)
    rows: list[dict[str, Any]] = []
    for name in catalog.list_models(store):
        versions = catalog.list_versions(store, name)
        if not versions:
            continue
        aliases = {alias: record.version for alias, record in catalog.list_aliases(store, name).items()}
        try:
            manifest = catalog.read_manifest(store, name, versions[-1])
        except (NotFoundError, IntegrityError) as exc:
            rows.append({"name": name, "versions": versions, "aliases": aliases, "error": exc.message})
            continue
        shipped = manifest.variant(manifest.selected["cpu"])
        rows.append({"name": name, "versions": versions, "aliases": aliases, "task": manifest.task,
                     "latest": manifest.version, "variant": shipped.name, "metric_name": manifest.metric_name,
                     "metric": shipped.metrics.metric if shipped.metrics else None})
    if as_json:
        import orjson

        click.echo(orjson.dumps(rows).decode())
        return
    if not rows:
        click.echo(f"no models in {store.uri}; build one with: maas build digits-cnn", err=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models in {store.uri}")
    for column in ("model", "task", "versions", "aliases", "latest: shipped variant", "latest: test metric"):
        table.add_column(column)
    for row in rows:
        metric = f"{row['metric_name']} {row['metric']:.4f}" if row.get("metric") is not None else row.get("error", "-")
        table.add_row(row["name"], row.get("task", "-"), ", ".join(row["versions"]),
                      ", ".join(f"{a} -> {v}" for a, v in sorted(row["aliases"].items())) or "-",
                      row.get("variant", "-"), metric)
    Console().print(table)


@main.command()
@click.argument("name")
@click.argument("version")
@click.option("--alias", required=True, help="Alias to move, e.g. prod or staging.")
@store_option
def promote(name: str, version: str, alias: str, store_uri: str | None) -> None:
    """Point ALIAS of model NAME at VERSION."""
    from functions.core import catalog

    record = catalog.promote(_open_store(store_uri), name, version, alias)
    click.echo(f"{name} {alias} -> {record.version}" + (f" (was {record.previous[0]})" if record.previous else ""))


@main.command()
@click.argument("name")
@click.option("--alias", required=True, help="Alias to move back to its previous version.")
@store_option
def rollback(name: str, alias: str, store_uri: str | None) -> None:
    """Return ALIAS of model NAME to the version it pointed at before."""
    from functions.core import catalog

    record = catalog.rollback(_open_store(store_uri), name, alias)
    click.echo(f"{name} {alias} -> {record.version}")


@main.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(store_uri: str | None, host: str, port: int) -> None:
    """Serve the prediction API (the same ASGI app as Lambda) with uvicorn."""
    import uvicorn

    from functions.api.app import create_app
    from functions.core.settings import Settings

    settings = Settings.from_env()
    if store_uri:
        settings = dataclasses.replace(settings, store=store_uri)
    app = create_app(settings)
    if settings.preload:
        app.state.cache.preload(settings.preload)
    click.echo(f"serving {settings.store} on http://{host}:{port} (OpenAPI docs: http://{host}:{port}/docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@main.command()
@click.argument("name")
@click.option("--data", required=True, help='JSON instances, e.g. \'[{"a": 1}]\' or {"instances": [...]}, or @FILE.')
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="Base URL of the API.")
@click.option("--version", "model_version", default=None, help="Explicit version (default: the alias).")
@click.option("--alias", default=None, help="Alias to resolve (default: prod, else latest).")
def predict(name: str, data: str, url: str, model_version: str | None, alias: str | None) -> None:
    """Call the prediction API for model NAME and print the JSON response."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request
    from pathlib import Path

    text = Path(data[1:]).read_text(encoding="utf-8") if data.startswith("@") else data
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    if not isinstance(payload, dict):
        payload = {"instances": payload}
    quoted = urllib.parse.quote(name, safe="")
    path = f"/v1/models/{quoted}/versions/{urllib.parse.quote(model_version, safe='')}/predict" if model_version \
        else f"/v1/models/{quoted}/predict" + (f"?alias={urllib.parse.quote(alias)}" if alias else "")
    request = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(payload).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            click.echo(response.read().decode())
    except urllib.error.HTTPError as exc:
        _err(f"error: HTTP {exc.code}: {exc.read().decode(errors='replace')}")
        sys.exit(8 if exc.code < 500 else 9)
    except urllib.error.URLError as exc:
        _err(f"error: cannot reach {url}: {exc.reason}")
        sys.exit(exit_code(StoreUnavailableError(str(exc.reason))))


@main.command("batch")
@click.argument("name")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="A .csv (header with feature names), .jsonl (one instance per line) or .npy file.")
@click.option("--output", "output_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for predictions.jsonl, errors.jsonl and report.json (must not hold them already).")
@click.option("--version", "model_version", default=None, help="Explicit version (default: the alias).")
@click.option("--alias", default=None, help="Alias to resolve (default: prod, else latest).")
@store_option
def batch_command(name: str, input_path: Path, output_dir: Path, model_version: str | None, alias: str | None,
                  store_uri: str | None) -> None:
    """Run the batch runner (the same code as Lambda and AWS Batch) on a local file."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from functions.batch.local import batch_threads, run_local
    from functions.core.model_cache import ModelCache
    from functions.core.settings import get_settings

    settings = get_settings()
    settings = dataclasses.replace(settings, intra_op_threads=batch_threads(settings.batch_threads),
                                   store=store_uri or settings.store)
    cache = ModelCache(_open_store(settings.store), settings)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} rows"),
                  TimeElapsedColumn(), console=Console(stderr=True)) as progress:
        task = progress.add_task(f"{name} <- {input_path.name}", total=None)
        stats = run_local(cache, name, input_path, output_dir, model_version, alias,
                          on_rows=lambda n: progress.advance(task, n))
    click.echo(f"rows in {stats.rows_in}, predicted {stats.rows_ok}, failed {stats.rows_failed}; "
               f"{stats.seconds_total:.2f} s -> {output_dir}")


class _RichReporter:
    """Build progress on stderr: a line per stage, bars for training epochs and upload bytes."""

    def __enter__(self) -> Any:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

        from model_build.pipeline import Reporter

        console = Console(stderr=True)
        progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), console=console, transient=False)
        byte_progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=console)
        training: dict[str, Any] = {}

        class Reporting(Reporter):
            def stage(self, text: str) -> None:
                console.print(f"[bold]{text}[/bold]")

            def epoch(self, epoch: int, total: int, val_loss: float) -> None:
                if "task" not in training:
                    progress.start()
                    training["task"] = progress.add_task("training", total=total, info="")
                info = f"epoch {epoch}/{total} val loss {val_loss:.4f}"
                progress.update(training["task"], completed=epoch, info=info)

            @contextlib.contextmanager
            def upload(self, total_bytes: int) -> Iterator[Callable[[int], None]]:
                progress.stop()
                with byte_progress:
                    task = byte_progress.add_task("upload", total=total_bytes)
                    yield lambda n: byte_progress.advance(task, n)

        self._progress = progress
        return Reporting()

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


if __name__ == "__main__":
    main()
