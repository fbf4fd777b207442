"""``maas batch``: the batch runner on a local file; a bad input exits 10 and leaves no output folder behind."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import click

from maas.common import open_store, store_option


def check_readable(path: Path) -> None:
    """``UnreadableInputError`` unless ``path`` is a file this process can open and read."""
    from functions.core.errors import UnreadableInputError

    if not path.is_file():
        raise UnreadableInputError(f"input {path} does not exist or is not a file")
    try:
        with path.open("rb") as stream:
            stream.read(1)
    except OSError as exc:
        raise UnreadableInputError(f"input {path} cannot be read: {exc.strerror or exc}") from None


@contextlib.contextmanager
def removed_on_failure(folder: Path) -> Iterator[None]:
    """Folders this run creates for ``folder`` are removed again, if still empty, when the run fails."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for path in missing:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def _host_processes(raw: str | None) -> int | None:
    """``--host-processes``: auto (None) or a number in range; a usage error naming the flag else."""
    if raw is None:
        return None
    from functions.core.settings import ENV_BATCH_HOST_PROCESSES, Settings, parse_host_processes

    try:
        return Settings(batch_host_processes=parse_host_processes(raw)).batch_host_processes
    except ValueError as exc:
        raise click.BadParameter(str(exc).replace(f"{ENV_BATCH_HOST_PROCESSES} ", ""),
                                 param_hint="--host-processes") from None


@click.command("batch")
@click.argument("name")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="A .csv (header with feature names), .jsonl (one instance per line), .npy or .parquet file.")
@click.option("--output", "output_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for predictions.jsonl (or .parquet), errors.jsonl and report.json (must not hold them "
                   "already).")
@click.option("--version", "model_version", default=None, help="Explicit version (default: the alias).")
@click.option("--alias", default=None, help="Alias to resolve (default: prod, else latest).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Processes: split the input into line-aligned parts, run them in parallel, merge (same output).")
@click.option("--id-column", default=None, metavar="COLUMN",
              help="A CSV column (or JSON-lines field) copied as \"id\" into every prediction and error row.")
@click.option("--output-format", default="jsonl", show_default=True, type=click.Choice(["jsonl", "parquet"]),
              help="Predictions as JSON lines or as a Parquet file with typed columns (errors stay JSON lines).")
@click.option("--host-processes", default=None, metavar="auto|N",
              help="Processes that tokenize/encode and format beside the model session (default: "
                   "MAAS_BATCH_HOST_PROCESSES, else auto: none on the CPU, where the session lanes take every core; "
                   "0: threads only).")
@store_option
def batch_command(name: str, input_path: Path, output_dir: Path, model_version: str | None, alias: str | None,
                  workers: int, id_column: str | None, output_format: str, host_processes: str | None,
                  store_uri: str | None) -> None:
    """Run the batch runner (the same code as Lambda and AWS Batch) on a local file."""
    processes = _host_processes(host_processes)
    check_readable(input_path)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from functions.batch.local import check_output_free, for_batch, run_local
    from functions.core.model_cache import ModelCache
    from functions.core.settings import get_settings

    check_output_free(output_dir)  # refused before any progress bar is drawn (run_local checks again)

    settings = get_settings()
    if host_processes is not None:
        settings = dataclasses.replace(settings, batch_host_processes=processes)
    settings = dataclasses.replace(for_batch(settings), store=store_uri or settings.store)
    cache = ModelCache(open_store(settings.store), settings)
    rows = [0]

    def advance(n: int) -> None:
        rows[0] += n
        progress.update(task, rows=rows[0])

    # The bar measures bytes read over the file size (known up front for every format), so it has a total
    # and an ETA; the row count done is shown beside it.
    with (removed_on_failure(output_dir),
          Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   TextColumn("{task.fields[rows]:,} rows"), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), console=Console(stderr=True)) as progress):
        task = progress.add_task(f"{name} <- {input_path.name}", total=input_path.stat().st_size, rows=0)
        if workers > 1:
            from functions.batch.workers import run_parallel

            stats = run_parallel(cache, name, input_path, output_dir, workers, model_version, alias,
                                 on_rows=advance, id_column=id_column, output_format=output_format)
        else:
            stats = run_local(cache, name, input_path, output_dir, model_version, alias, on_rows=advance,
                              id_column=id_column, on_bytes=lambda done: progress.update(task, completed=done),
                              output_format=output_format)
    click.echo(f"rows in {stats.rows_in}, predicted {stats.rows_ok}, failed {stats.rows_failed}; "
               f"{stats.seconds_total:.2f} s -> {output_dir}")
