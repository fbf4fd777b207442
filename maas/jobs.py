"""``maas jobs submit/status/fetch``: asynchronous batch jobs through the API (``maas.client``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from maas.predict import url_option, with_auth

if TYPE_CHECKING:
    from maas.client import Client



def _client(url: str, auth: str, token: str | None, api_key: str | None) -> Client:
    from maas.client import Client

    return Client(url, auth=auth, token=token, api_key=api_key)  # type: ignore[arg-type]


@click.group()
def jobs() -> None:
    """Batch jobs for inputs too large for one request: submit a file, follow it, fetch the outputs."""


@jobs.command()
@click.argument("name")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="A .csv, .jsonl, .npy or .parquet file.")
@click.option("--id-column", default=None, help="A column copied as \"id\" into every output row.")
@click.option("--output-format", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True,
              help="Predictions as JSON lines or as a Parquet file (typed columns; errors stay JSON lines).")
@click.option("--version", "model_version", default=None, help="Explicit version (default: the alias).")
@click.option("--alias", default=None, help="Alias to resolve (default: prod, else latest).")
@url_option
@with_auth
def submit(name: str, input_path: Path, id_column: str | None, output_format: str, model_version: str | None,
           alias: str | None, url: str, auth: str, token: str | None, api_key: str | None) -> None:
    """Create a job for model NAME, upload the input and print the job id and status URL."""
    from maas.batch import check_readable

    check_readable(input_path)
    client = _client(url, auth, token, api_key)
    job = client.submit_job(name, input_path.suffix.lstrip(".").lower(), input_path.stat().st_size, id_column,
                            model_version, alias, output_format)
    client.upload(job["upload"], input_path)
    click.echo(json.dumps({"job_id": job["job_id"], "status_url": job["status_url"]}))


@jobs.command()
@click.argument("job_id")
@url_option
@with_auth
def status(job_id: str, url: str, auth: str, token: str | None, api_key: str | None) -> None:
    """Print a job's status (pending, running, succeeded, failed) and row counts."""
    click.echo(json.dumps(_client(url, auth, token, api_key).job(job_id)))


@jobs.command()
@click.argument("job_id")
@click.option("--output", "output_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for predictions.jsonl (or .parquet), errors.jsonl and report.json.")
@url_option
@with_auth
def fetch(job_id: str, output_dir: Path, url: str, auth: str, token: str | None, api_key: str | None) -> None:
    """Download a succeeded job's outputs into a folder."""
    from functions.core.errors import NotFoundError

    client = _client(url, auth, token, api_key)
    job = client.job(job_id)
    if job.get("status") != "succeeded":
        raise NotFoundError(f"job {job_id} has no outputs yet: it is {job.get('status')}")
    from functions.batch.local import check_output_free

    check_output_free(output_dir)  # as `maas batch`: outputs are never overwritten
    output_dir.mkdir(parents=True, exist_ok=True)
    outputs = job["outputs"]
    parts = outputs.get("parts")  # a fanned-out input: one pair of files per part, in input order
    parquet = job.get("output_format") == "parquet"
    for name in ("predictions", "errors", "report"):
        links = [part[name] for part in parts] if parts and name != "report" else [outputs[name]]
        target = output_dir / {"report": "report.json", "errors": "errors.jsonl"}.get(
            name, "predictions.parquet" if parquet else "predictions.jsonl")
        if name == "predictions" and parquet and len(links) > 1:
            _join_parquet(client, links, target)
        else:
            with target.open("wb") as f:
                for link in links:
                    client.fetch(link, into=f)
        click.echo(f"{name}: {target}")


def _join_parquet(client: Client, links: list[str], target: Path) -> None:
    """A fanned-out job's Parquet parts as one file, in input order (pyarrow: ``pip install 'maas[local]'``)."""
    import tempfile

    from functions.batch.parquet import concatenate

    with tempfile.TemporaryDirectory(prefix="maas-fetch-", dir=target.parent) as tmp:
        parts = []
        for index, link in enumerate(links):
            part = Path(tmp) / f"part{index:05d}.parquet"
            with part.open("wb") as f:
                client.fetch(link, into=f)
            parts.append(part)
        concatenate(parts, target)
