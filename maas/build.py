"""``maas build``: the one runtime command that reaches into ``model_build`` (and torch), when it runs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click

from maas.common import open_store, store_option


@click.command()
@click.argument("recipe")
@store_option
@click.option("--quick", is_flag=True, help="Few epochs and short measurements: a smoke build in seconds.")
def build(recipe: str, store_uri: str | None, quick: bool) -> None:
    """Train, export, verify, quantize, gate, document and publish RECIPE (a built-in name or a .py file).

    Prints "NAME VERSION" on success.
    """
    from functions.core import catalog
    from model_build.builder import build_recipe
    from model_build.recipes import load_recipe

    loaded = load_recipe(recipe)
    store = open_store(store_uri)
    catalog.list_versions(store, loaded.name)  # fail fast on an unreachable store, before training
    with _RichReporter() as reporter:
        manifest = build_recipe(loaded, store, quick=quick, reporter=reporter)
    selected = manifest.variant(manifest.selected["cpu"])
    metric = selected.metrics.metric if selected.metrics else float("nan")
    click.echo(f"shipped {selected.name}, test {manifest.metric_name} {metric:.4f}; card: "
               f"{store.uri}/{catalog.version_prefix(manifest.name, manifest.version)}/card.md", err=True)
    click.echo(f"{manifest.name} {manifest.version}")


class _RichReporter:
    """Build progress on stderr: a line per stage, bars for training epochs and upload bytes."""

    def __enter__(self) -> Any:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

        from model_build.reporting import Reporter

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
