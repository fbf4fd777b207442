"""The benchmark harness: stored results are well formed and render; a quick run writes a result file.
(No figure is asserted on: speed is measured in bench/, never tested.)"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import BENCHMARKS, RESULTS, ROOT, write_doc


@pytest.mark.parametrize("name", BENCHMARKS)
def test_stored_result_is_well_formed_and_renders(name: str) -> None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        pytest.skip(f"no stored result for {name} yet")
    result = json.loads(path.read_text())
    assert result["benchmark"] == name and result["command"].startswith("make bench")
    assert {"cpu", "cores", "python", "commit", "date", "libraries"} <= set(result["machine"])
    table = importlib.import_module(f"bench.{name}").render(result)
    assert "|---" in table


def test_doc_is_regenerated_with_every_stored_benchmark_and_its_chart(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    write_doc(RESULTS, doc)
    text = doc.read_text()
    for name in BENCHMARKS:
        if (RESULTS / f"{name}.json").exists():
            title = importlib.import_module(f"bench.{name}").TITLE
            assert f"## {title}" in text
    charts = list((tmp_path / "bench").glob("*.png"))
    assert charts and all(png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for png in charts)
    assert all(f"(bench/{png.name})" in text for png in charts)


def test_quick_run_writes_a_well_formed_result(tmp_path: Path) -> None:
    results, doc = tmp_path / "results", tmp_path / "benchmarks.md"
    subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--only", "batch", "--results", str(results),
                    "--doc", str(doc)], cwd=ROOT, check=True, capture_output=True, timeout=600)
    result = json.loads((results / "batch.json").read_text())
    assert result["quick"] is True and result["command"] == "make bench BENCH_ARGS=--quick"
    assert [r["rows"] for r in result["sizes"]] == [20_000, 100_000]
    figures = [r[key] for r in result["sizes"] for key in ("runner_rows_per_s", "raw_rows_per_s")]
    assert all(isinstance(figure, int | float) for figure in figures)  # recorded, whatever their size
    assert "(quick mode)" in doc.read_text()
