"""Where a build came from: git commit, library versions, a hash of the data."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

LIBRARIES = ("maas", "torch", "onnx", "onnxruntime", "numpy", "scikit-learn", "onnxscript")


def git_commit(cwd: Path | None = None) -> str | None:
    """The current commit, suffixed with '+dirty' when the work tree has changes; None outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape the artifact."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def data_sha256(*parts: Any) -> str:
    """A stable hash over arrays and lists of strings, in order."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(str(part.dtype).encode() + str(part.shape).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update("\x1f".join(map(str, part)).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()
