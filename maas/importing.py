"""``maas import SOURCE --name NAME``: an existing model (.onnx, .pt2/.pt, Hugging Face folder) -> a new version."""

from __future__ import annotations

from pathlib import Path

import click

from maas.build import _RichReporter
from maas.common import open_store, store_option


def _names(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(v.strip() for v in value.split(","))
    if not all(names):
        raise click.BadParameter("empty name in the comma-separated list")
    return names


@click.command("import")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="The model name to publish a new version of.")
@click.option("--task", type=click.Choice(["classification", "regression", "embedding"]), default=None,
              help="What the model does, when the graph does not say.")
@click.option("--labels", default=None, metavar="L1,L2,...", help="Class labels, in output column order.")
@click.option("--features", default=None, metavar="F1,F2,...", help="Tabular feature names, in input column order.")
@click.option("--input-kind", type=click.Choice(["tabular", "image", "text"]), default=None,
              help="What the input is, when its shape does not say.")
@click.option("--sample", type=click.Path(path_type=Path), default=None,
              help="Raw inputs (.csv with a header, .jsonl, .npy): the rows gates, profile and background use.")
@click.option("--eval", "eval_file", type=click.Path(path_type=Path), default=None,
              help="Labelled rows (.csv or .jsonl) for accuracy or error metrics and their gates.")
@click.option("--target", default=None, metavar="COLUMN", help="The label column of --eval.")
@click.option("--example", type=click.Path(path_type=Path), default=None,
              help="A PyTorch program's example input (.npy, or .npz for several inputs).")
@click.option("--quick", is_flag=True, help="Fewer check rows and short measurements: a smoke import in seconds.")
@store_option
def import_command(source: Path, name: str, task: str | None, labels: str | None, features: str | None,
                   input_kind: str | None, sample: Path | None, eval_file: Path | None, target: str | None,
                   example: Path | None, quick: bool, store_uri: str | None) -> None:
    """Import SOURCE (an .onnx file, a .pt2/.pt PyTorch program or a Hugging Face model folder) as a new
    version of NAME: signature inferred, variants made and gated against the original runtime, card written.

    Prints "NAME VERSION" on success.
    """
    from functions.core import catalog
    from model_build.importers.pipeline import import_model
    from model_build.importers.source import ImportOptions

    options = ImportOptions(name=name, task=task, labels=_names(labels), features=_names(features),  # type: ignore[arg-type]
                            input_kind=input_kind, sample=sample, eval=eval_file, target=target,  # type: ignore[arg-type]
                            example=example, quick=quick)
    store = open_store(store_uri)
    with _RichReporter() as reporter:
        manifest = import_model(source, options, store, reporter)
    selected = manifest.variant(manifest.selected["cpu"])
    metric = selected.metrics.metric if selected.metrics else float("nan")
    click.echo(f"shipped {selected.name}, {manifest.metric_name} {metric:.4f}; card: "
               f"{store.uri}/{catalog.version_prefix(manifest.name, manifest.version)}/card.md", err=True)
    click.echo(f"{manifest.name} {manifest.version}")
