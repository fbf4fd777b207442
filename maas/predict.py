"""``maas predict``: call the v1 predict route of a running API (through ``maas.client``) and print the answer."""

from __future__ import annotations

from typing import Any

import click

auth_options = [
    click.option("--auth", type=click.Choice(["auto", "iam", "none"]), default="auto", show_default=True,
                 help="iam: sign with SigV4 (AWS credential chain); auto: sign AWS endpoint URLs "
                      "(*.execute-api.*.amazonaws.com, *.lambda-url.*.on.aws) unless a token or an API key is given."),
    click.option("--token", default=None, envvar="MAAS_TOKEN",
                 help="Bearer token (JWT) for a JWT-protected API (or $MAAS_TOKEN)."),
    click.option("--api-key", default=None, envvar="MAAS_API_KEY",
                 help="API key (x-api-key header) for an apiKey stage or `maas serve --keys` (or $MAAS_API_KEY)."),
]

url_option = click.option("--url", default="http://127.0.0.1:8000", show_default=True, envvar="MAAS_URL",
                          help="Base URL of the API (or $MAAS_URL).")
# NAME's instances and where to send them: shared by `maas predict` and `maas explain`.
call_options = [
    click.option("--data", required=True,
                 help='JSON instances, e.g. \'[{"a": 1}]\' or {"instances": [...]}, or @FILE.'),
    url_option,
    click.option("--version", "model_version", default=None, help="Explicit version (default: the alias)."),
    click.option("--alias", default=None, help="Alias to resolve (default: prod, else latest)."),
    click.option("--routing-key", default=None, envvar="MAAS_ROUTING_KEY",
                 help="Sticky A/B key (x-maas-routing-key): an alias's split sends the same key to the same "
                      "version (or $MAAS_ROUTING_KEY)."),
]


def with_call_options(command: click.decorators.FC) -> click.decorators.FC:
    """--data, --url, --version, --alias and --routing-key."""
    for option in reversed(call_options):
        command = option(command)
    return command


def read_payload(data: str) -> dict[str, Any]:
    """``--data``: JSON inline or ``@FILE``; a bare list becomes ``{"instances": [...]}``."""
    import json
    from pathlib import Path

    text = Path(data[1:]).read_text(encoding="utf-8") if data.startswith("@") else data
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    return payload if isinstance(payload, dict) else {"instances": payload}


def with_auth(command: click.decorators.FC) -> click.decorators.FC:
    """The --auth, --token and --api-key options (shared by the commands that call the API)."""
    for option in reversed(auth_options):
        command = option(command)
    return command


@click.command()
@click.argument("name")
@with_call_options
@with_auth
def predict(name: str, data: str, url: str, model_version: str | None, alias: str | None, routing_key: str | None,
            auth: str, token: str | None, api_key: str | None) -> None:
    """Call the prediction API for model NAME and print the JSON response."""
    from maas.client import Client

    payload = read_payload(data)
    client = Client(url, auth=auth, token=token, routing_key=routing_key, api_key=api_key)  # type: ignore[arg-type]
    click.echo(client.send("POST", Client.model_path(name, "predict", model_version, alias), payload).decode())
