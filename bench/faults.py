"""Store faults with the default request budget (20 s): `maas serve` (one process) reads its models from moto's
S3 server through a loopback fault proxy that can make the store stopped (connection refused), hung (accepts,
never answers) or slow (each chunk of the answer delayed 0.2 s). The served process runs with
`MAAS_ALIAS_TTL_SECONDS=2`, so that alias targets and the model listing expire within every run.

Soak: 32 clients (asyncio + httpx, one connection each) on an alias route of a model in memory for 30 s with
the store healthy, then 30 s with it hung; the alias is moved (straight in the store) when the hang starts,
and "recovery" is the time from the store's return to the first answer from the new target. Fault table:
8 clients for 3 s on each route in each store state (a request that waits for the store takes up to the
budget, so such a cell lasts that long), then the time from the store's return until the first answer of the
model not loaded before, and until the alias moved during the fault is served. The fault tests
(`tests/reliability/`) assert the statuses; this measures the seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from functions.core.store import S3Store
    from tests.reliability.proxy import FaultProxy, Mode

TITLE = "Store faults: answers while the model store is stopped, hung or slow (default budget)"
ROOT = Path(__file__).resolve().parents[1]
MODES: tuple[Mode, ...] = ("stopped", "hung", "slow")
SOAK_CLIENTS = 32
CELL_CLIENTS = 8
TTL_SECONDS = 2.0
ROW = {"instances": [[1.0, 2.0]]}
ROUTES = {
    "alias route, model in memory": ("post", "/v1/models/loaded/predict"),
    "version route, model in memory": ("post", "/v1/models/loaded/versions/1/predict"),
    "version route, model not loaded": ("post", "/v1/models/cold-{mode}/versions/1/predict"),
    "`GET /v1/models` (listing read before)": ("get", "/v1/models"),
    "`GET /v2/health/live`": ("get", "/v2/health/live"),
}
RECOVERY_LIMIT = 120.0


def run(quick: bool) -> dict[str, Any]:
    from moto.server import ThreadedMotoServer

    from bench.http import _free_port, _stop
    from bench.load import _wait
    from bench.moto_store import AWS_ENV
    from functions.core.settings import Settings
    from tests.reliability.proxy import FaultProxy

    soak_seconds, cell_seconds = (5.0, 1.0) if quick else (30.0, 3.0)
    os.environ.update(AWS_ENV)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    direct, bucket = _publish(f"http://{host}:{port}")
    proxy = FaultProxy((host, int(port)))
    http_port = _free_port()
    base = f"http://127.0.0.1:{http_port}"
    with tempfile.TemporaryDirectory(prefix="maas-faults-") as tmp:
        env = {**os.environ, "MAAS_S3_ENDPOINT_URL": proxy.endpoint, "MAAS_ALIAS_TTL_SECONDS": str(TTL_SECONDS),
               "MAAS_CACHE_DIR": str(Path(tmp) / "cache")}
        process = subprocess.Popen([sys.executable, "-m", "maas", "serve", "--store", direct.uri, "--host",
                                    "127.0.0.1", "--port", str(http_port)], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            asyncio.run(_wait(base))
            asyncio.run(_warm(base))
            soak = _soak(base, proxy, direct, soak_seconds)
            rows = [row for mode in MODES for row in _mode(base, proxy, direct, mode, cell_seconds)]
        finally:
            _stop(process)
            proxy.close()
            server.stop()
    return {"quick": quick, "budget_seconds": Settings().request_budget_seconds, "ttl_seconds": TTL_SECONDS,
            "bucket": bucket, "soak": soak, "rows": rows}


def _publish(endpoint: str) -> tuple[S3Store, str]:
    import boto3

    from functions.core import catalog
    from functions.core.store import S3Store
    from tests.reliability.artifacts import model_bytes, version_files

    bucket = f"maas-faults-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    direct = S3Store(bucket, "store", endpoint_url=endpoint)
    published = [("loaded", "1"), ("loaded", "2"), *((f"cold-{mode}", "1") for mode in MODES)]
    for name, version in published:
        for key, data in version_files(name, model_bytes(), version=version).items():
            direct.put_bytes(f"{catalog.version_prefix(name, version)}/{key}", data)
    catalog.promote(direct, "loaded", "1", "prod")
    return direct, bucket


async def _warm(base: str) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=60) as client:
        for version in ("2", "1"):  # both versions in memory: a recovery is not a model load
            assert (await client.post(f"{base}/v1/models/loaded/versions/{version}/predict", json=ROW)).is_success
        assert (await client.post(f"{base}/v1/models/loaded/predict", json=ROW)).is_success
        assert (await client.get(f"{base}/v1/models")).is_success


async def _drive(base: str, route: str, mode: str, clients: int, seconds: float) -> list[tuple[int, float, Any]]:
    """``clients`` users sending requests on ``route`` one after another until ``seconds`` have passed; each
    answer's status, milliseconds and version (or the listing's ``stale``)."""
    import httpx

    method, path = ROUTES[route]
    url = base + path.format(mode=mode)
    out: list[tuple[int, float, Any]] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def user(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                response = await (client.post(url, json=ROW) if method == "post" else client.get(url))
                status, body = response.status_code, response.json()
            except httpx.HTTPError:
                status, body = 0, {}
            out.append((status, (time.perf_counter() - started) * 1000, body.get("version", body.get("stale"))))

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(user(client) for _ in range(clients)))
    return out


def _summary(answers: list[tuple[int, float, Any]]) -> dict[str, Any]:
    latencies = sorted(ms for _, ms, _ in answers)
    return {"requests": len(answers), "statuses": dict(sorted(Counter(str(s) for s, _, _ in answers).items())),
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[max(0, math.ceil(len(latencies) * 0.99) - 1)], 2),
            "answered": dict(sorted(Counter(str(v) for _, _, v in answers).items()))}


def _until(base: str, check: str, want: str, started: float) -> float | None:
    """Seconds from ``started`` until the alias route answers version ``want`` (``check`` = "alias") or the
    listing shows alias prod -> ``want`` and is not stale (``check`` = "listing"); None past the limit."""
    import httpx

    with httpx.Client(base_url=base, timeout=60) as client:
        while time.perf_counter() - started < RECOVERY_LIMIT:
            if check == "alias":
                response = client.post("/v1/models/loaded/predict", json=ROW)
                done = response.status_code == 200 and response.json()["version"] == want
            else:
                body = client.get("/v1/models").json()
                models = {m["name"]: m for m in body.get("models", [])}
                done = models.get("loaded", {}).get("aliases", {}).get("prod") == want and not body.get("stale")
            if done:
                return round(time.perf_counter() - started, 3)
            time.sleep(0.02)
    return None


def _soak(base: str, proxy: FaultProxy, direct: S3Store, seconds: float) -> dict[str, Any]:
    from functions.core import catalog

    route = "alias route, model in memory"
    healthy = _summary(asyncio.run(_drive(base, route, "pass", SOAK_CLIENTS, seconds)))
    proxy.set_mode("hung")
    catalog.promote(direct, "loaded", "2", "prod")
    hung = _summary(asyncio.run(_drive(base, route, "hung", SOAK_CLIENTS, seconds)))
    proxy.set_mode("pass")
    back = time.perf_counter()
    recovery = {"alias": _until(base, "alias", "2", back), "listing": _until(base, "listing", "2", back)}
    return {"clients": SOAK_CLIENTS, "seconds": seconds, "healthy": healthy, "hung": hung,
            "p99_ratio": round(hung["p99_ms"] / healthy["p99_ms"], 2),
            "p50_ratio": round(hung["p50_ms"] / healthy["p50_ms"], 2), "recovery_seconds": recovery}


def _mode(base: str, proxy: FaultProxy, direct: S3Store, mode: Mode, seconds: float) -> list[dict[str, Any]]:
    import httpx

    from functions.core import catalog

    current = catalog.resolve(direct, "loaded", "prod")
    moved = "1" if current == "2" else "2"
    proxy.set_mode(mode)
    catalog.promote(direct, "loaded", moved, "prod")  # moved during the fault, straight in the store
    rows = []
    for route in ROUTES:
        answers = asyncio.run(_drive(base, route, mode, CELL_CLIENTS, seconds))
        rows.append({"store": mode, "route": route, **_summary(answers)})
    proxy.set_mode("pass")
    back = time.perf_counter()
    with httpx.Client(base_url=base, timeout=60) as client:
        first = client.post(f"/v1/models/cold-{mode}/versions/1/predict", json=ROW).status_code
    loaded = round(time.perf_counter() - back, 3)
    served = _until(base, "alias", moved, back)
    rows.append({"store": mode, "route": "recovery", "first_load": {"status": first, "seconds": loaded},
                 "alias_move_served_seconds": served})
    return rows


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def render(result: dict[str, Any]) -> str:
    soak = result["soak"]
    lines = [f"Request budget {result['budget_seconds']:g} s (the default), alias and listing TTL "
             f"{result['ttl_seconds']:g} s.", "",
             f"Soak: {soak['clients']} clients on the alias route for {soak['seconds']:g} s each.", "",
             "| store | requests | statuses | versions answered | p50 (ms) | p99 (ms) |", "|---|---|---|---|---|---|"]
    for state in ("healthy", "hung"):
        s = soak[state]
        lines.append(f"| {state} | {s['requests']} | {_counts(s['statuses'])} | {_counts(s['answered'])} "
                     f"| {_ms(s['p50_ms'])} | {_ms(s['p99_ms'])} |")
    recovery = soak["recovery_seconds"]
    lines += ["", f"Hung / healthy: p50 {soak['p50_ratio']}x, p99 {soak['p99_ratio']}x. After the store is back, "
              f"the alias moved during the hang is served after {_seconds(recovery['alias'])}, the fresh listing "
              f"after {_seconds(recovery['listing'])}.", "",
              f"Fault table: {CELL_CLIENTS} clients per cell.", "",
              "| store | route | statuses | p50 (ms) | p99 (ms) |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        if row["route"] == "recovery":
            first = row["first_load"]
            lines.append(f"| {row['store']} | recovery: first load {first['status']} after "
                         f"{_seconds(first['seconds'])}; alias move served after "
                         f"{_seconds(row['alias_move_served_seconds'])} | | | |")
        else:
            lines.append(f"| {row['store']} | {row['route']} | {_counts(row['statuses'])} | {_ms(row['p50_ms'])} "
                         f"| {_ms(row['p99_ms'])} |")
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} x{n}" for key, n in counts.items())


def _seconds(value: float | None) -> str:
    return "never (over 120 s)" if value is None else f"{value:.2f} s"
