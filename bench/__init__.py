"""Benchmarks: each module has ``run(quick) -> dict`` and ``render(result) -> str``; ``bench.run`` drives them."""
