"""PyTorch programs: a ``torch.export`` archive (``.pt2``) or a TorchScript file (``.pt``), exported by maas.

Loading a program runs code the user trusts (as any PyTorch loader does): ``torch.export.load`` and
``torch.jit.load`` only, never ``torch.load`` of a pickle. The program must take one tensor (batch first) and
return one tensor. maas exports it itself (``model_build.export.export_onnx``): the dynamo exporter for
``.pt2`` (the archive's graph, with its recorded input-shape checks lifted so the batch axis can be dynamic),
the TorchScript exporter for ``.pt`` (the dynamo exporter cannot trace a ScriptModule). The example input is
the one the archive carries, else ``--example``. After the export, the program and the ONNX graph run side by
side on a batch of another size: a program that fixes its batch size is refused, and so is an export that
does not reproduce the program. The reference every variant is gated against is the loaded program itself.

The graph cannot name classes: the task comes from ``--task`` (``--labels`` implies classification), and a
classifier needs ``--labels`` (one per output column; two for one score per row). The export is the program
as it is: the shared tail serves logits as probabilities (softmax, or a sigmoid for one score per row).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from functions.core.errors import InvalidSourceError
from functions.core.manifest import Task
from model_build.contracts import OUTPUT_NAMES
from model_build.export import export_onnx
from model_build.importers.source import Feeds, ImportedSource, ImportOptions, SourceKind, file_sha256

EXPORTED_FILE = "program.onnx"
PARITY_TOLERANCE = 1e-4
"""Max |onnxruntime - torch| of maas's own export on the probe batch (relative to the output's scale)."""
PROBE_EXTRA_ROWS = 3
REFERENCE_BATCH = 1024


def load(path: Path, options: ImportOptions, work_dir: Path) -> ImportedSource:
    """Load the program, export it with a dynamic batch axis, check the export and hand it over."""
    kind: SourceKind = "torch-export" if path.suffix.lower() == ".pt2" else "torchscript"
    program, carried, input_name = _load_program(path) if kind == "torch-export" else _load_script(path)
    example = _example(path, options, carried, input_name)
    task: Task | None = options.task or ("classification" if options.labels else None)
    outputs = _run_program(program, example, path)
    if task is None:
        raise InvalidSourceError(f"{path.name}: a PyTorch program does not say what it predicts (outputs per "
                                 f"instance: {list(outputs.shape[1:])}); pass --task classification|regression|"
                                 "embedding (--labels for a classifier)")
    labels = list(options.labels) if options.labels else None
    if task == "classification":
        _check_labels(path, outputs, labels)
    served = _Unpinned(program) if kind == "torch-export" else program
    exported = work_dir / EXPORTED_FILE
    exporter: Literal["dynamo", "torchscript"] = "dynamo" if kind == "torch-export" else "torchscript"
    output_name = OUTPUT_NAMES[task]
    try:
        export_onnx(served, _at_least_two_rows(example), input_name, output_name, exporter, exported)
    except Exception as exc:  # the exporters raise many types
        raise InvalidSourceError(f"{path.name}: maas could not export the program to ONNX "
                                 f"({type(exc).__name__}: {_first_line(exc)})") from None
    diff = _check_export(path, served, exported, input_name, example)

    def reference(feeds: Feeds) -> list[npt.NDArray[Any]]:
        return [_predict(served, feeds[input_name])]

    runtime = "torch.export program" if kind == "torch-export" else "TorchScript program"
    note = (f"exported by maas with the {exporter} exporter; max |onnxruntime - PyTorch| {diff:.3g} on a probe "
            f"batch of {len(example) + PROBE_EXTRA_ROWS} rows")
    return ImportedSource(
        kind=kind, path=path, sha256=file_sha256(path), onnx_path=exported, reference=reference,
        reference_runtime=f"PyTorch {torch.__version__.split('+')[0]} running the {runtime}",
        task=task, labels=labels, description=f"Imported from the {runtime} {path.name}.", notes=[note])


class _Unpinned(torch.nn.Module):
    """A ``torch.export`` program as exported and as the reference runs it. Its train/eval mode was fixed when
    it was exported (the unlifted module refuses ``eval()``), so switching modes leaves the program alone."""

    def __init__(self, program: torch.nn.Module) -> None:
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> _Unpinned:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _single_tensor(self.program(x))


def _load_program(path: Path) -> tuple[torch.nn.Module, npt.NDArray[Any] | None, str]:
    """A ``.pt2`` archive's program as a module, its example input (if it carries one) and its input name."""
    with _quiet_logger("torch.export"):
        try:
            program = torch.export.load(str(path))
        except Exception as exc:  # corrupt archives raise RuntimeError, zipfile and deserialization errors
            raise InvalidSourceError(f"{path.name}: not a readable torch.export archive "
                                     f"({type(exc).__name__}: {_first_line(exc)})") from None
    names = list(program.graph_signature.user_inputs)
    if len(names) != 1:
        raise InvalidSourceError(f"{path.name}: the program takes {len(names)} inputs ({', '.join(names)}); maas "
                                 "serves programs with one tensor input")
    example: npt.NDArray[Any] | None = None
    if program.example_inputs is not None:
        args, kwargs = program.example_inputs
        tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
        if len(tensors) == 1:
            example = tensors[0].detach().cpu().numpy()
    module = program.module(check_guards=False)
    _lift_input_checks(module)
    return module, example, _input_name(str(names[0]))


def _lift_input_checks(module: torch.nn.Module) -> None:
    """Remove the pre-forward hook that pins each input dimension to its export-time size, so maas can
    re-export with a dynamic batch axis. A program whose graph really depends on the batch size is caught by
    the probe after the export."""
    hooks = module._forward_pre_hooks
    for key, hook in list(hooks.items()):
        if getattr(hook, "__name__", "") == "_check_input_constraints_pre_hook":
            del hooks[key]


def _load_script(path: Path) -> tuple[torch.nn.Module, None, str]:
    """A TorchScript file's module and its input name (no example input: TorchScript does not keep one)."""
    try:
        module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:  # corrupt files, torch.save pickles (which maas never unpickles)
        raise InvalidSourceError(f"{path.name}: not a readable TorchScript file (maas never unpickles torch.save "
                                 f"files: save the model with torch.jit.save or torch.export.save) "
                                 f"({type(exc).__name__}: {_first_line(exc)})") from None
    arguments = [a.name for a in module.forward.schema.arguments][1:]  # first is self
    if len(arguments) != 1:
        raise InvalidSourceError(f"{path.name}: the program takes {len(arguments)} inputs ({', '.join(arguments)});"
                                 " maas serves programs with one tensor input")
    return module.eval(), None, _input_name(arguments[0])


def _input_name(name: str) -> str:
    """The program's argument name as the graph input name (word characters only)."""
    cleaned = re.sub(r"\W", "_", name).strip("_")
    return cleaned or "input"


def _example(path: Path, options: ImportOptions, carried: npt.NDArray[Any] | None,
             input_name: str) -> npt.NDArray[Any]:
    """``--example`` when given, else the archive's own example input; float64 becomes float32."""
    if options.example is not None:
        example = _read_example(options.example, input_name)
    elif carried is not None:
        example = carried
    else:
        what = "this archive carries no example input" if path.suffix.lower() == ".pt2" else \
            "a TorchScript file carries no example input"
        raise InvalidSourceError(f"{path.name}: {what}; pass --example FILE (.npy, or .npz with {input_name!r}) "
                                 "with a batch of inputs")
    if example.ndim == 0 or len(example) == 0:
        raise InvalidSourceError(f"{path.name}: the example input must be a non-empty batch (batch axis first)")
    if example.dtype == np.float64:
        example = example.astype(np.float32)
    if example.dtype.kind not in "biuf":
        raise InvalidSourceError(f"{path.name}: the example input has dtype {example.dtype}; expected numbers")
    return example


def _read_example(file: Path, input_name: str) -> npt.NDArray[Any]:
    """One array from ``.npy``, or from ``.npz`` (the input's name, else its only array); never pickles."""
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidSourceError(f"--example {file.name}: not a readable .npy/.npz file ({_first_line(exc)})") \
            from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        keys = list(loaded.keys())
        if input_name in keys:
            return np.asarray(loaded[input_name])
        if len(keys) == 1:
            return np.asarray(loaded[keys[0]])
    raise InvalidSourceError(f"--example {file.name}: holds {len(keys)} arrays ({', '.join(keys[:5])}) and none "
                             f"is named {input_name!r}, the program's input")


def _run_program(program: torch.nn.Module, example: npt.NDArray[Any], path: Path) -> npt.NDArray[Any]:
    try:
        return _predict(program, example)
    except InvalidSourceError:
        raise
    except Exception as exc:  # whatever the user's program raises on its own example
        raise InvalidSourceError(f"{path.name}: the program fails on the example input of shape "
                                 f"{list(example.shape)} ({type(exc).__name__}: {_first_line(exc)})") from None


@torch.no_grad()
def _predict(module: torch.nn.Module, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The module's output on ``x`` in chunks, as a numpy array (float outputs as float32)."""
    parts = [_single_tensor(module(torch.from_numpy(np.ascontiguousarray(x[i:i + REFERENCE_BATCH]))))
             for i in range(0, len(x), REFERENCE_BATCH)]
    out = torch.cat(parts).detach().cpu().numpy()
    return out.astype(np.float32) if out.dtype.kind == "f" else out


def _single_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, list | tuple) and len(out) == 1 and isinstance(out[0], torch.Tensor):
        return out[0]
    count = len(out) if isinstance(out, list | tuple | dict) else type(out).__name__
    raise InvalidSourceError(f"the program returns {count} outputs; maas serves programs that return one tensor "
                             "(wrap it to return the one to serve)")


def _check_labels(path: Path, outputs: npt.NDArray[Any], labels: list[str] | None) -> None:
    """A classifier returns [batch, classes] scores, or one score per row (two classes); --labels names them."""
    binary = outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1)
    if not binary and (outputs.ndim != 2 or outputs.shape[1] < 2):
        raise InvalidSourceError(f"{path.name}: a classifier must return [batch, classes] scores or one score per "
                                 f"row; this program returns shape {list(outputs.shape)}")
    classes = 2 if binary else outputs.shape[1]
    if labels is None:
        raise InvalidSourceError(f"{path.name}: the program returns {classes} class scores; pass --labels with "
                                 f"{classes} names (the graph cannot name its classes)")
    if len(labels) != classes:
        raise InvalidSourceError(f"{path.name}: --labels names {len(labels)} classes but the program returns "
                                 f"{classes} class scores")


def _at_least_two_rows(example: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The export example: a batch of 1 would let torch.export specialize the batch axis to 1."""
    return example if len(example) >= 2 else np.concatenate([example, example])


def _probe(example: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A batch of another size than the example's: its rows repeated, floats slightly perturbed."""
    rows = len(example) + PROBE_EXTRA_ROWS
    probe = np.concatenate([example] * math.ceil(rows / len(example)))[:rows].copy()
    if probe.dtype.kind == "f":
        scale = float(np.std(example)) or 1.0
        probe += np.random.default_rng(0).normal(0, 0.01 * scale, probe.shape).astype(probe.dtype)
    return probe


def _check_export(path: Path, served: torch.nn.Module, exported: Path, input_name: str,
                  example: npt.NDArray[Any]) -> float:
    """Run the program and the export on a batch of another size; return max |difference| (relative to the
    output's scale when that exceeds 1). InvalidSourceError for a fixed batch size or a failed parity."""
    from model_build import evaluate

    probe = _probe(example)
    fixed = (f"{path.name}: the program only runs on a batch of {len(example)} (its example's size); maas serves "
             "any batch size: export it with a dynamic batch dimension, e.g. torch.export.export(model, args, "
             "dynamic_shapes=({0: torch.export.Dim('batch')},))")
    try:
        expected = _predict(served, probe)
    except Exception:  # the program itself rejects another batch size
        raise InvalidSourceError(fixed) from None
    try:
        session = evaluate.cpu_session(exported)
        got = np.asarray(session.run(None, {input_name: probe})[0])
    except Exception:  # the graph baked the batch size in
        raise InvalidSourceError(fixed) from None
    if got.shape != expected.shape:
        raise InvalidSourceError(fixed)
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64)))) if got.size else 0.0
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    if not diff <= PARITY_TOLERANCE * scale:
        raise InvalidSourceError(f"{path.name}: maas's ONNX export differs from the program by {diff:.3g} "
                                 f"(tolerance {PARITY_TOLERANCE * scale:.3g}); this program cannot be imported")
    return diff


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Silence a logger's warnings (torch.export logs a traceback before it raises on a corrupt archive)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
