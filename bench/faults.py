"""Store faults: how long each answer takes while the model store (moto's S3 server behind a loopback fault
proxy) is stopped (connection refused), hung (accepts, never answers) or slow (each chunk of the answer
delayed 0.2 s), with a 3 s store budget; then the first request after the store is back. The rig is the one
the fault tests use (``tests/reliability/rig.py``); those assert the statuses, this measures the seconds.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.reliability.proxy import Mode

TITLE = "Store faults: seconds per answer while the model store is stopped, hung or slow"
MODES: tuple[Mode, ...] = ("stopped", "hung", "slow")


def run(quick: bool) -> dict[str, Any]:
    from moto.server import ThreadedMotoServer

    from bench.moto_store import AWS_ENV
    from tests.reliability.rig import BUDGET, ROUTES, ROW, fault_rig, request

    os.environ.update(AWS_ENV)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    rows: list[dict[str, Any]] = []
    try:
        host, port = server.get_host_and_port()
        with fault_rig(f"http://{host}:{port}") as rig:
            for mode in MODES:
                rig.proxy.set_mode(mode)
                rig.clock.now += 60  # past the alias TTL: the alias must be re-read
                for route in ROUTES:
                    started = time.perf_counter()
                    status = request(rig, route, mode).status_code
                    rows.append({"store": mode, "route": route, "status": status,
                                 "seconds": round(time.perf_counter() - started, 3)})
                rig.proxy.set_mode("pass")
                started = time.perf_counter()
                status = rig.client.post(f"/v1/models/cold-{mode}/versions/1/predict", json=ROW).status_code
                rows.append({"store": mode, "route": "recovery (first request after the store is back)",
                             "status": status, "seconds": round(time.perf_counter() - started, 3)})
    finally:
        server.stop()
    return {"quick": quick, "budget_seconds": BUDGET, "rows": rows}


def render(result: dict[str, Any]) -> str:
    lines = [f"Store budget {result['budget_seconds']:g} s.", "", "| store | route | status | seconds |",
             "|---|---|---|---|"]
    lines += [f"| {r['store']} | {r['route']} | {r['status']} | {r['seconds']:.2f} |" for r in result["rows"]]
    return "\n".join(lines)
