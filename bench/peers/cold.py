"""One cold start in a fresh process: build the handler, answer one API Gateway v2 predict event, print ok.

    python -m bench.peers.cold maas|minimal|torch|floor
"""

from __future__ import annotations

import sys


def main() -> None:
    kind = sys.argv[1]
    if kind == "maas":
        from functions.api.handler import handler
    elif kind == "floor":
        from bench.peers.floor import handler
    else:
        from bench.peers import handlers

        handler = handlers.minimal_handler() if kind == "minimal" else handlers.torch_handler()
    import json
    import os

    from bench.peers.event import LambdaContext, predict_event

    instances = json.loads(os.environ["BENCH_INSTANCES"]) if "BENCH_INSTANCES" in os.environ else None
    response = handler(predict_event(os.environ.get("BENCH_MODEL", "digits-cnn"), instances), LambdaContext())
    sys.stdout.write(f"STATUS {response['statusCode']}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
