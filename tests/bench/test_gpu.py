"""``make bench-gpu`` without a GPU: says so plainly and succeeds."""

from __future__ import annotations

import pytest

from bench import gpu


def test_bench_gpu_says_no_gpu_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    present, _ = gpu.cuda_status()
    if present:
        pytest.skip("a GPU is present: the benchmark itself runs in make bench-gpu")
    assert gpu.main([]) == 0
    assert "no GPU is present" in capsys.readouterr().out


def test_the_end_to_end_rows_render_threads_and_host_processes() -> None:
    result = {"device": "CUDA: a GPU", "batch": 32, "rounds": 50, "gpu_variant": "fp16", "cpu_variant": "int8-dynamic",
              "worker fp16 on CUDA (ms)": 0.9, "CPU variant on the CPU (ms)": 800.0,
              "PyTorch fp16 eager on CUDA (ms)": 5.0, "long batch": "256 x 128 tokens",
              "worker fp16 on CUDA, long batch (ms)": 3.5, "PyTorch fp16 eager on CUDA, long batch (ms)": 5.9,
              "end-to-end rows": 20000, "end-to-end rows/s": 10_000.0, "session rows/s, same batches": 100_000.0,
              "bucketing": False, "end-to-end rows/s, Parquet output": 12_000.0,
              "end-to-end rows/s, host processes": 61_000.0, "host processes": 14,
              "end-to-end rows/s, Parquet output, host processes": 70_000.0,
              "host processes write the same bytes": True, "host processes start (s)": 0.61}
    text = gpu.render(result)
    assert "| threads only (one process) | 10,000 | **10%** | 12,000 | **12%** |" in text
    assert "| 14 host processes (`auto`) | 61,000 | **61%** | 70,000 | **70%** |" in text
    assert "start in 0.61 s" in text
    older = {k: v for k, v in result.items() if "host processes" not in k}  # results stored before them
    assert "host processes (`auto`)" not in gpu.render(older)
