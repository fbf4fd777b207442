"""``maas predict``: call the v1 predict route of a running API and print the JSON answer."""

from __future__ import annotations

import click


@click.command()
@click.argument("name")
@click.option("--data", required=True, help='JSON instances, e.g. \'[{"a": 1}]\' or {"instances": [...]}, or @FILE.')
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, envvar="MAAS_URL",
              help="Base URL of the API (or $MAAS_URL).")
@click.option("--version", "model_version", default=None, help="Explicit version (default: the alias).")
@click.option("--alias", default=None, help="Alias to resolve (default: prod, else latest).")
def predict(name: str, data: str, url: str, model_version: str | None, alias: str | None) -> None:
    """Call the prediction API for model NAME and print the JSON response."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request
    from pathlib import Path

    from functions.core.errors import ApiFailedError, ApiRejectedError, ApiUnreachableError

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
        message = f"HTTP {exc.code}: {exc.read().decode(errors='replace')}"
        raise (ApiRejectedError if exc.code < 500 else ApiFailedError)(exc.code, message) from None
    except urllib.error.URLError as exc:
        raise ApiUnreachableError(f"cannot reach {url}: {exc.reason}") from None
