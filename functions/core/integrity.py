"""Integrity checks run before any model bytes are handed to a parser."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from functions.core.errors import IntegrityError
from functions.core.manifest import FileEntry
from functions.core.onnx_wire import ModelFacts, WireFormatError, inspect_model


def verify_bytes(data: bytes, entry: FileEntry) -> None:
    """Check size, then sha256, of ``data`` against its manifest entry."""
    if len(data) != entry.bytes:
        raise IntegrityError(f"{entry.path}: size {len(data)} bytes, manifest says {entry.bytes}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise IntegrityError(f"{entry.path}: sha256 {digest[:12]}..., manifest says {entry.sha256[:12]}...")


def vet_onnx(data: bytes, allowed_domains: Iterable[str], label: str = "model") -> ModelFacts:
    """Refuse ONNX bytes that reference external data or use operator domains outside the allow-list; else
    return what the walk found.

    Only domains that nodes actually use count (optimizers declare unused opset imports), in every graph the
    model holds (main, subgraphs, local functions, training_info); the domains of functions defined inside the
    model obey the allow-list too.
    """
    try:
        facts = inspect_model(data)
    except WireFormatError as exc:
        raise IntegrityError(f"{label}: not a well-formed ONNX model ({exc})") from None
    problem = refusal(facts, allowed_domains)
    if problem:
        raise IntegrityError(f"{label}: {problem}")
    return facts


def refusal(facts: ModelFacts, allowed_domains: Iterable[str]) -> str | None:
    """Why a well-formed ONNX model may not be loaded (no nodes, external data, foreign operator domains), or
    None."""
    if facts.nodes == 0:
        return "ONNX model has no nodes"
    if facts.external_tensors:
        return f"{facts.external_tensors} tensor(s) reference external data"
    foreign = sorted((facts.node_domains | facts.function_domains) - set(allowed_domains))
    if foreign:
        return f"operator domain(s) not allowed: {', '.join(map(repr, foreign))}"
    return None


def verify_model_bytes(data: bytes, entry: FileEntry, allowed_domains: Iterable[str]) -> None:
    """Full check of an ONNX artifact: size, checksum, then structure."""
    verify_bytes(data, entry)
    vet_onnx(data, allowed_domains, entry.path)
