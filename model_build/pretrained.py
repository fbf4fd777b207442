"""``maas build`` for pretrained transformer encoders: no training; export, fuse, quantize, gate on cosine
similarity and retrieval, publish with the tokenizer.

The graph is encoder + mean pooling + L2 normalisation, with dynamic batch and sequence axes. onnxruntime's
transformer optimizer fuses attention, embedding and LayerNorm; int8 is dynamic quantization of the fused
graph; fp16 (for the GPU) is converted after fusing with float32 inputs and outputs kept.
"""

from __future__ import annotations

import hashlib
import logging
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from functions.core.integrity import vet_onnx
from functions.core.manifest import GateResult, Manifest, Provenance, TokenizerInput, TokenizerPreprocessing
from functions.core.names import check_model_name
from functions.core.preprocessing import TokenizerPreprocessor
from functions.core.settings import get_settings
from functions.core.store import Store
from model_build import card, evaluate, gates, profile_build, provenance, tail
from model_build.contracts import PretrainedEncoder as PretrainedEncoder
from model_build.reporting import Reporter
from model_build.variants import Candidate

TOKENIZER_FILE = "tokenizer.json"
INPUTS: list[TokenizerInput] = ["input_ids", "attention_mask", "token_type_ids"]
LATENCY_BATCH = 32


def build_pretrained(recipe: PretrainedEncoder, store: Store, *, quick: bool = False,
                     reporter: Reporter | None = None) -> Manifest:
    """Export, fuse, make fp32/int8/fp16, gate, write the card and publish; raises BuildFailedError."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    check_model_name(recipe.name)
    torch.manual_seed(recipe.seed)
    reporter.stage("loading the pretrained model")
    module, tokenizer_json = recipe.load()
    spec = TokenizerPreprocessing(tokenizer_file=TOKENIZER_FILE, max_length=recipe.max_length,
                                  max_chars=recipe.max_chars, inputs=list(INPUTS))
    tokenizer = TokenizerPreprocessor(spec, tokenizer_json, INPUTS[0])
    texts = recipe.sample_texts()
    queries, documents, answers = recipe.retrieval_check()
    with torch.no_grad():
        reference = _torch_embed(module, tokenizer.encode(texts))

    with tempfile.TemporaryDirectory(prefix="maas-build-") as tmp:
        work = Path(tmp)
        reporter.stage("exporting to ONNX")
        exported = work / "exported.onnx"
        export_encoder(module, tokenizer.encode(texts[:2]), exported)
        reporter.stage("fusing and quantizing")
        candidates = make_candidates(recipe, exported, work, lambda path: _run(evaluate.cpu_session(path),
                                                                                tokenizer.encode(texts)))

        reporter.stage("measuring variants")
        settings = get_settings()
        runs = (5, 2) if quick else (50, 10)
        measured: dict[str, gates.Measurement] = {}
        results: dict[str, list[GateResult]] = {}
        cosines: dict[str, float] = {}
        fp32_out: npt.NDArray[np.float32] | None = None
        fp32_top1: list[int] = []
        for candidate in candidates:
            if candidate.path is None:
                continue
            vet_onnx(candidate.path.read_bytes(), settings.allowed_op_domains, candidate.path.name)
            session = evaluate.cpu_session(candidate.path)
            out = _run(session, tokenizer.encode(texts))
            top1 = _top1(session, tokenizer, queries, documents)
            if candidate.name == "fp32":
                fp32_out, fp32_top1 = out, top1
                parity = float(np.min(np.sum(out * reference, axis=1)))
                results["fp32"] = [GateResult(
                    name="parity", variant="fp32", passed=parity >= recipe.parity_min_cosine, value=parity,
                    threshold=recipe.parity_min_cosine, detail="min cosine to PyTorch over the sample texts")]
            assert fp32_out is not None
            cosine = float(np.min(np.sum(out * fp32_out, axis=1)))
            cosines[candidate.name] = cosine
            agreement = float(np.mean([a == b for a, b in zip(top1, fp32_top1, strict=True)]))
            results.setdefault(candidate.name, [])
            if candidate.name != "fp32":
                results[candidate.name] += [
                    GateResult(name="cosine to fp32", variant=candidate.name,
                               passed=cosine >= recipe.variant_min_cosine, value=cosine,
                               threshold=recipe.variant_min_cosine,
                               detail=f"min over {len(texts)} sample texts"),
                    GateResult(name="retrieval top-1 unchanged", variant=candidate.name, passed=agreement == 1.0,
                               value=agreement, threshold=1.0,
                               detail=f"{len(queries)} queries over {len(documents)} documents")]
            cpu = candidate.target == "cpu"
            accuracy = float(np.mean([t == a for t, a in zip(top1, answers, strict=True)]))
            measured[candidate.name] = gates.Measurement(
                name=candidate.name, metric=accuracy,
                latency_ms_b1=latency(session, tokenizer, texts, 1, runs[0]) if cpu else math.nan,
                latency_ms_b256=latency(session, tokenizer, texts, LATENCY_BATCH, runs[1]) if cpu else math.nan,
                parity_max_abs_diff=float(np.max(np.abs(out - reference))), target=candidate.target)

        selection = tail.select(recipe.name, measured, results, required="fp32")

        reporter.stage("writing the model card")
        weights_digest = hashlib.sha256()
        for tensor in module.state_dict().values():
            weights_digest.update(tensor.detach().cpu().numpy().tobytes())
        draft = tail.draft_manifest(
            recipe.name, exported, candidates, measured, selection, LATENCY_BATCH,
            task="embedding", description=recipe.description, preprocessing=spec, labels=None,
            metric_name="retrieval top-1", reference_stats=_token_stats(tokenizer, texts),
            provenance=Provenance(recipe=recipe.name, git_commit=provenance.git_commit(),
                                  libraries=provenance.library_versions(), data_sha256=weights_digest.hexdigest(),
                                  seed=recipe.seed, quick=quick, build_seconds=0.0))
        card.plot_variants(draft, work / card.VARIANTS_PLOT)
        plots = [card.VARIANTS_PLOT]
        files = tail.shipped_files(candidates, selection, work, plots, {TOKENIZER_FILE: tokenizer_json})
        files[profile_build.PROFILE_FILE] = profile_build.write_pretrained_profile(work, spec, tokenizer_json, texts,
                                                                                   fp32_out)
        return tail.publish(store, draft, files, work, recipe.source, plots, reporter, started)


def export_encoder(module: torch.nn.Module, example: dict[str, npt.NDArray[Any]], path: Path,
                   inputs: list[TokenizerInput] | None = None, output_name: str = "embedding") -> None:
    """One self-contained ONNX graph with dynamic batch and sequence axes (TorchScript exporter: the
    optimizer's fusion patterns match its attention subgraph). ``module`` takes ``inputs`` (default: all
    three tokenizer outputs) positionally and returns one tensor, named ``output_name``."""
    names = list(inputs or INPUTS)
    args = tuple(torch.from_numpy(example[name]) for name in names)
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=names, output_names=[output_name],
                          dynamic_axes={**axes, output_name: {0: "batch"}}, opset_version=17)


def make_candidates(recipe: PretrainedEncoder, exported: Path, work: Path,
                    embed: Callable[[Path], npt.NDArray[np.float32]], search: bool = True) -> list[Candidate]:
    """fp32 fused, int8 dynamic (per-channel) of the fused graph, fp16 of the fused graph. ``embed`` runs a
    model file on the recipe's sample texts (for the int8 search; ``search=False`` skips the greedy part)."""
    import onnx
    from onnxruntime.transformers import optimizer

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    fused = optimizer.optimize_model(str(exported), model_type="bert", num_heads=recipe.num_heads,
                                     hidden_size=recipe.hidden_size, opt_level=0)
    stats = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    fp32 = work / "model.fp32.onnx"
    fused.save_model_to_file(str(fp32))
    graph = [(n.name, n.op_type) for n in onnx.load(str(fp32), load_external_data=False).graph.node]
    float_candidates = recipe.int8_float_candidates(graph)
    int8 = work / "model.int8-dynamic.onnx"
    reference = embed(fp32)

    def min_cosine(path: Path) -> float:
        return float(np.min(np.sum(embed(path) * reference, axis=1)))

    kept, cosine = search_int8(fp32, int8, float_candidates, min_cosine, recipe.variant_min_cosine, search)
    fused.convert_float_to_float16(keep_io_types=True)
    fp16 = work / "model.fp16.onnx"
    fused.save_model_to_file(str(fp16))
    fusion = ", ".join(f"{k} x{v}" for k, v in sorted(stats.items()))
    in_float = (f"{len(kept)} of {len(float_candidates)} sensitive MatMuls kept in fp32 "
                f"({', '.join(_short(node) for node in kept) or 'none'}), "
                + ("chosen by a greedy search against the cosine gate" if search else "no search (quick build)")
                if float_candidates else "every MatMul quantized")
    return [Candidate("fp32", "fp32", "cpu", fp32, f"fused by onnxruntime's transformer optimizer ({fusion})"),
            Candidate("int8-dynamic", "int8", "cpu", int8,
                      f"dynamic int8, per-channel weights; {in_float}; min cosine to fp32 {cosine:.4f}"),
            Candidate("fp16", "fp16", "gpu", fp16, "fp16 after fusion, fp32 inputs and outputs (GPU variant)")]


def search_int8(fp32: Path, out: Path, candidates: list[str], score: Callable[[Path], float],
                threshold: float, greedy: bool = True) -> tuple[list[str], float]:
    """Quantize ``fp32`` to ``out`` keeping as few ``candidates`` in float as the gate allows.

    Everything quantized first. If that fails the gate and keeping every candidate in float passes, a greedy
    forward search adds, one at a time, the candidate whose return to float scores best, until the gate
    passes (at most n(n+1)/2 quantizations); without ``greedy``, every candidate stays in float then.
    Returns the nodes kept in float and the score of ``out``.
    """
    quantize_int8(fp32, out, [])
    everything = score(out)
    if everything >= threshold or not candidates:
        return [], everything
    quantize_int8(fp32, out, candidates)
    all_float = score(out)
    if all_float < threshold or not greedy:
        return list(candidates), all_float  # failing: no subset is expected to pass; not greedy: keep them all
    trial = out.with_name(f"search.{out.name}")
    kept: list[str] = []
    remaining = list(candidates)
    while len(remaining) > 1:
        scores: dict[str, float] = {}
        for node in remaining:
            quantize_int8(fp32, trial, [*kept, node])
            scores[node] = score(trial)
        best = max(remaining, key=lambda node: scores[node])
        kept.append(best)
        remaining.remove(best)
        if scores[best] >= threshold:
            quantize_int8(fp32, out, kept)
            trial.unlink(missing_ok=True)
            return kept, scores[best]
    trial.unlink(missing_ok=True)
    quantize_int8(fp32, out, candidates)
    return list(candidates), all_float


def quantize_int8(fp32: Path, out: Path, keep_float: list[str]) -> None:
    """Dynamic int8 with per-channel weights (reduce_range for CPUs without VNNI), quietly."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR
    try:
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         nodes_to_exclude=keep_float, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.level = level


def _short(node: str) -> str:
    """``/encoder/encoder/layer.0/output/dense/MatMul`` -> ``layer.0/output/dense``."""
    parts = [part for part in node.split("/") if part]
    layer = next((i for i, part in enumerate(parts) if part.startswith("layer.")), 0)
    return "/".join(parts[layer:-1]) or node


def _torch_embed(module: torch.nn.Module, feeds: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
    out: torch.Tensor = module(*(torch.from_numpy(feeds[name]) for name in INPUTS))
    return out.detach().numpy().astype(np.float32)


def _run(session: Any, feeds: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
    names = {i.name for i in session.get_inputs()}
    result: npt.NDArray[np.float32] = session.run(None, {k: v for k, v in feeds.items() if k in names})[0]
    return result.astype(np.float32)


def _top1(session: Any, tokenizer: TokenizerPreprocessor, queries: list[str], documents: list[str]) -> list[int]:
    q = _run(session, tokenizer.encode(queries))
    d = _run(session, tokenizer.encode(documents))
    return [int(i) for i in np.argmax(q @ d.T, axis=1)]


def latency(session: Any, tokenizer: TokenizerPreprocessor, texts: list[str], batch: int, runs: int) -> float:
    """Median ms of ``session.run`` on ``batch`` sample texts (cycled), padded to their longest."""
    chosen = [texts[i % len(texts)] for i in range(batch)]
    feeds = tokenizer.encode(chosen)
    _run(session, feeds)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        _run(session, feeds)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _token_stats(tokenizer: TokenizerPreprocessor, texts: list[str]) -> dict[str, list[float]]:
    lengths = np.array([[int(row.sum())] for row in tokenizer.encode(texts)["attention_mask"]], dtype=np.float64)
    return {"mean": lengths.mean(axis=0).round(3).tolist(), "std": lengths.std(axis=0).round(3).tolist(),
            "min": lengths.min(axis=0).tolist(), "max": lengths.max(axis=0).tolist()}
