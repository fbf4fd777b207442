"""``maas explain NAME --data JSON-or-@FILE [--url URL]``: call the explain route and print each instance's
attributions as a ranked bar chart in the terminal (green pushes the explained output up, red down)."""

from __future__ import annotations

from typing import Any

import click

from maas.predict import read_payload, with_auth, with_call_options

TOP = 12
BAR_WIDTH = 30


@click.command("explain")
@click.argument("name")
@with_call_options
@click.option("--top", default=TOP, show_default=True, type=click.IntRange(1), help="Bars shown per instance.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON response instead of the chart.")
@with_auth
def explain_command(name: str, data: str, url: str, model_version: str | None, alias: str | None,
                    routing_key: str | None, top: int, as_json: bool, auth: str, token: str | None,
                    api_key: str | None) -> None:
    """Explain model NAME's predictions for the given instances (Kernel SHAP, see docs/explanations.md)."""
    import json

    from maas.client import Client

    client = Client(url, auth=auth, token=token, routing_key=routing_key, api_key=api_key)  # type: ignore[arg-type]
    body = client.call("POST", Client.model_path(name, "explain", model_version, alias), read_payload(data))
    if as_json:
        click.echo(json.dumps(body))
        return
    from rich.console import Console

    console = Console()
    console.print(f"[bold]{body['model']}[/] version {body['version']} ({body['variant']})")
    for index, answer in enumerate(body["explanations"]):
        for line in render(index, answer, top):
            console.print(line)


def ranked(answer: dict[str, Any]) -> list[tuple[str, float]]:
    """(name, attribution) pairs, largest magnitude first: features, words (with their offsets) or pixels."""
    values = answer["attributions"]
    if isinstance(values, dict):
        pairs = [(str(k), float(v)) for k, v in values.items()]
    elif "tokens" in answer:
        pairs = [(f"{t['text']!r} @{t['start']}", float(v)) for t, v in zip(answer["tokens"], values, strict=True)]
    else:
        pairs = [(f"pixel r{r}c{c}", float(v)) for r, row in enumerate(values) for c, v in enumerate(row)]
    return sorted(pairs, key=lambda kv: -abs(kv[1]))


def render(index: int, answer: dict[str, Any], top: int) -> list[str]:
    """Rich markup lines: the prediction, output = base + sum, then one bar per attribution."""
    prediction = f"label {answer['label']}" if "label" in answer else f"value {answer['value']:.4g}"
    pairs = ranked(answer)
    total = sum(v for _, v in pairs)
    lines = [f"\n[bold]instance {index}[/]: {prediction}; explained output {answer['output']:.4g} = "
             f"base {answer['base_value']:.4g} + attributions {total:+.4g} ({answer['method']}, "
             f"{answer['evaluations']} evaluations)"]
    shown = pairs[:top]
    scale = max((abs(v) for _, v in shown), default=0.0) or 1.0
    width = max((len(n) for n, _ in shown), default=0)
    for name, value in shown:
        bar = "█" * max(1, round(abs(value) / scale * BAR_WIDTH)) if value else ""
        color = "green" if value > 0 else "red"
        lines.append(f"  {name.ljust(width)} [{color}]{bar}[/] {value:+.4g}")
    if len(pairs) > top:
        lines.append(f"  ... {len(pairs) - top} more")
    return lines
