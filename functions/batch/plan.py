"""Route an input by its estimated work, not its bytes: one Lambda, fan-out over Lambda, or AWS Batch.

rows = bytes / bytes-per-row (``.npy``: exact from the header; ``.parquet``: exact from the footer, decoded
without pyarrow; ``.csv``/``.jsonl``: from the head of the object, one ranged read). seconds-per-row = the
shipped CPU variant's measured latency at batch 256 from the manifest, divided by 256, times ``cost_factor``
(the runner's own per-row work and a slower CPU than the build machine's), plus the read time of its bytes. The
plan (route, reason and every figure) is written to the output folder as ``plan.json``.

An input only AWS Batch can run (Parquet in or out: the Lambda bundle has no pyarrow) is planned by
``choose_batch``: one job, or an array job split by row groups (or lines) when its work is more than one child's
share.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from functions.batch.ranges import HEAD_BYTES, ByteSource, npy_layout
from functions.core.manifest import Manifest

Route = Literal["lambda", "fanout", "batch"]

ENV_FANOUT_STATE_MACHINE = "MAAS_FANOUT_STATE_MACHINE"
ENV_FANOUT_ROWS_PER_PART = "MAAS_FANOUT_ROWS_PER_PART"
ENV_FANOUT_MAX_PARTS = "MAAS_FANOUT_MAX_PARTS"
ENV_BATCH_TIMEOUT_S = "MAAS_BATCH_TIMEOUT_S"
ENV_BATCH_COST_FACTOR = "MAAS_BATCH_COST_FACTOR"
ENV_BATCH_GPU_WORK_S = "MAAS_BATCH_GPU_WORK_S"
ENV_BATCH_MAX_RECEIVES = "MAAS_BATCH_MAX_RECEIVES"

DEFAULT_SECONDS_PER_ROW = 0.001  # a version without measured latency: 1 ms per row
ARRAY_MAX = 10_000  # AWS Batch array size limit; Distributed Map has no item limit that binds first


@dataclass(frozen=True)
class Limits:
    """What one Lambda can do and which engines exist (read once from the environment)."""

    lambda_seconds: float = 600.0
    safety_seconds: float = 20.0
    margin: float = 0.5
    cost_factor: float = 3.0
    read_bytes_per_s: float = 50e6
    rows_per_part: int = 200_000
    max_parts: int = ARRAY_MAX
    gpu_work_seconds: float = 4 * 3600.0
    batch_part_seconds: float = 3600.0
    fanout: bool = False
    batch: bool = False
    max_receives: int = 4

    @property
    def budget_seconds(self) -> float:
        """Work one Lambda may be given: the usable time, with margin."""
        return max(1.0, (self.lambda_seconds - self.safety_seconds) * self.margin)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, batch: bool = False,
                 safety_ms: int = 20_000) -> Limits:
        env = os.environ if env is None else env
        defaults = cls()

        def number(name: str, default: float) -> float:
            value = float(env.get(name) or default)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {env.get(name)!r}")
            return value

        return cls(lambda_seconds=number(ENV_BATCH_TIMEOUT_S, defaults.lambda_seconds),
                   safety_seconds=safety_ms / 1000, cost_factor=number(ENV_BATCH_COST_FACTOR, defaults.cost_factor),
                   rows_per_part=int(number(ENV_FANOUT_ROWS_PER_PART, defaults.rows_per_part)),
                   max_parts=int(number(ENV_FANOUT_MAX_PARTS, defaults.max_parts)),
                   gpu_work_seconds=number(ENV_BATCH_GPU_WORK_S, defaults.gpu_work_seconds),
                   fanout=bool(env.get(ENV_FANOUT_STATE_MACHINE)), batch=batch,
                   max_receives=int(number(ENV_BATCH_MAX_RECEIVES, defaults.max_receives)))


@dataclass(frozen=True)
class Estimate:
    """How much work an input is."""

    bytes: int
    rows: int
    bytes_per_row: float
    seconds_per_row: float
    seconds: float
    cost_source: str
    row_groups: int | None = None
    """Parquet: the row groups in the footer (the unit a Parquet input is split by)."""


@dataclass(frozen=True)
class Plan:
    """The route and the numbers behind it."""

    route: Route
    reason: str
    estimate: Estimate
    budget_seconds: float
    parts: int = 1
    part_bytes: int = 0
    target: Literal["cpu", "gpu"] = "cpu"
    split_by: str | None = None
    """How the input is cut into parts: ``lines`` (.csv, .jsonl), ``rows`` (.npy), ``row groups`` (.parquet);
    None when it runs whole."""

    @property
    def fits(self) -> bool:
        """Whether one Lambda is expected to finish the input."""
        return self.estimate.seconds <= self.budget_seconds

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fits_one_lambda": self.fits}


def bytes_per_row(source: ByteSource, fmt: str) -> tuple[float, int]:
    """(bytes per row, rows) estimated from the head of the object (exact for ``.npy``)."""
    if fmt == ".npy":
        shape, dtype, _ = npy_layout(source)
        return float(max(1, dtype.itemsize * math.prod(shape[1:]))), int(shape[0])
    head = source.read(0, min(source.size, HEAD_BYTES))
    complete = head[:head.rfind(b"\n") + 1] if source.size > len(head) else head
    lines = complete.count(b"\n") + (0 if not complete or complete.endswith(b"\n") else 1)
    skip = 0
    if fmt == ".csv" and lines:
        skip = complete.find(b"\n") + 1 or len(complete)
        lines -= 1
    if lines <= 0:
        return float(max(1, source.size)), 1 if source.size else 0
    per_row = (len(complete) - skip) / lines
    return per_row, math.ceil((source.size - skip) / per_row)


def seconds_per_row(manifest: Manifest, cost_factor: float) -> tuple[float, str]:
    """Per-row cost from the shipped CPU variant's measured latency at the manifest's latency batch."""
    name = manifest.selected.get("cpu")
    metrics = manifest.variant(name).metrics if name else None
    if metrics is None or not metrics.latency_ms_b256:
        return DEFAULT_SECONDS_PER_ROW * cost_factor, "default (no measured latency in the manifest)"
    per_row = metrics.latency_ms_b256 / 1000 / manifest.latency_batch
    return per_row * cost_factor, (f"variant {name}: {metrics.latency_ms_b256} ms per batch of "
                                   f"{manifest.latency_batch} x cost factor {cost_factor}")


def estimate(source: ByteSource, fmt: str, manifest: Manifest, limits: Limits) -> Estimate:
    groups = None
    if fmt == ".parquet":  # UnreadableInputError when the footer does not decode
        from functions.batch.footer import row_groups

        found = row_groups(source)
        groups, rows = len(found), sum(count for count, _ in found)
        per_byte_row = source.size / max(1, rows)
    else:
        per_byte_row, rows = bytes_per_row(source, fmt)
    per_row, cost_source = seconds_per_row(manifest, limits.cost_factor)
    per_row += per_byte_row / limits.read_bytes_per_s
    return Estimate(bytes=source.size, rows=rows, bytes_per_row=round(per_byte_row, 2),
                    seconds_per_row=per_row, seconds=round(rows * per_row, 3), cost_source=cost_source,
                    row_groups=groups)


SPLIT_BY = {".csv": "lines", ".jsonl": "lines", ".npy": "rows", ".parquet": "row groups"}


def choose(work: Estimate, limits: Limits, has_gpu: bool, force: bool = False) -> Plan:
    """The cheapest route that finishes. ``force``: one Lambda already ran out of time on this input."""
    budget = limits.budget_seconds
    fits = work.seconds <= budget and not force
    rows_fit = max(1, int(budget / max(work.seconds_per_row, 1e-9)))
    rows_per_part = max(1, min(limits.rows_per_part, rows_fit))
    parts = max(1, math.ceil(work.rows / rows_per_part))
    part_bytes = max(1, math.ceil(rows_per_part * work.bytes_per_row))
    numbers = f"estimated {work.seconds:.0f} s for {work.rows:,} rows; one Lambda's budget is {budget:.0f} s"
    if fits:
        return Plan("lambda", f"fits one Lambda: {numbers}", work, budget)
    big = parts > limits.max_parts or (has_gpu and work.seconds > limits.gpu_work_seconds)
    if limits.batch and (big or not limits.fanout):
        target: Literal["cpu", "gpu"] = "gpu" if has_gpu else "cpu"
        children = min(ARRAY_MAX, max(2, math.ceil(work.seconds / limits.batch_part_seconds)))
        return Plan("batch", f"AWS Batch array job of {children} {target.upper()} children: {numbers}", work, budget,
                    parts=children, part_bytes=max(1, math.ceil(work.bytes / children)), target=target)
    if limits.fanout and parts <= limits.max_parts:
        return Plan("fanout", f"fan-out over {parts} Lambda children of {rows_per_part:,} rows: {numbers}", work,
                    budget, parts=parts, part_bytes=part_bytes)
    return Plan("lambda", f"no engine for large inputs is configured; trying one Lambda: {numbers}", work, budget)


def choose_batch(work: Estimate, limits: Limits, has_gpu: bool, fmt: str, why: str, can_split: bool) -> Plan:
    """For an input only AWS Batch can run (``why``: it needs pyarrow, which the Lambda bundle leaves out): one
    job, or, when its work is more than one child's share (``batch_part_seconds``) and the fan-out can start an
    array job (``can_split``), an array job of children that split it (Parquet: by row groups, at most one
    child per row group)."""
    target: Literal["cpu", "gpu"] = "gpu" if has_gpu else "cpu"
    budget = limits.budget_seconds
    children = min(ARRAY_MAX, math.ceil(work.seconds / limits.batch_part_seconds))
    numbers = f"estimated {_seconds(work.seconds)} s for {work.rows:,} rows"
    if work.row_groups is not None:
        children = min(children, work.row_groups)
        numbers += f" in {work.row_groups:,} row groups"
    numbers += f"; one AWS Batch child's share is {_seconds(limits.batch_part_seconds)} s"
    if children < 2 or not can_split:
        if children < 2:
            single = "one AWS Batch job (too little work to split)"
        else:
            single = "one AWS Batch job (no fan-out state machine is configured to split it)"
        return Plan("batch", f"{why}: {single}: {numbers}", work, budget, parts=1, part_bytes=work.bytes,
                    target=target)
    by = SPLIT_BY.get(fmt, "lines")
    return Plan("batch", f"{why}: AWS Batch array job of {children} {target.upper()} children split by {by}: "
                f"{numbers}", work, budget, parts=children, part_bytes=max(1, math.ceil(work.bytes / children)),
                target=target, split_by=by)


def _seconds(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"
