"""Run one command and print its wall time and the largest peak RSS among it and its descendants (a fresh
process, so RUSAGE_CHILDREN is this command's only).

    python -m bench.peers.fanout_child CMD ARG...
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> None:
    started = time.perf_counter()
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": round(peak_mb, 1), "stdout": done.stdout.strip()[-300:]}))


if __name__ == "__main__":
    main()
