"""The Lambda bundle, built without Docker: manylinux wheels for the Lambda's Python and CPU, then trimmed,
precompiled and measured.

``build_bundle`` is a plain function (the tests and ``bench/`` call it); ``LocalPipBundling`` plugs it into
CDK as an ``ILocalBundling`` so ``cdk synth`` never needs a container engine.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import ILocalBundling

from infra.locking import MACHINES, LockTarget, lambda_lock, read_lock
from infra.project import PROJECT_ROOT

# Folders of the dependencies that the runtime never imports: tests, tooling and build-time helpers.
TRIMMED = (
    "onnxruntime/transformers", "onnxruntime/tools", "onnxruntime/quantization", "onnxruntime/datasets",
    "onnxruntime/backend", "numpy/f2py", "numpy/_pyinstaller", "bin",
)
TRIMMED_SUFFIXES = (".pyi", ".pxd", ".h", ".c", ".cpp")
# botocore ships API models for every AWS service (~28 MB); the functions call only these.
AWS_SERVICES_USED = frozenset({"s3", "sqs", "batch", "sts"})
# What the bundle holds (names, versions, wheel hashes), written at its root.
MANIFEST_NAME = "maas-bundle.json"


class BundleError(RuntimeError):
    """The bundle could not be built, or is over its size budget; synth stops with this message."""


@dataclass(frozen=True)
class BundleReport:
    """What was built: where, for which platform, and how big."""

    path: Path
    architecture: str
    python_version: str
    unzipped_bytes: int
    files: int
    compiled: bool


def find_python(version: str) -> str | None:
    """An interpreter of exactly this version (on PATH, or in a pyenv install), to compile bytecode with."""
    candidates = [shutil.which(f"python{version}")]
    pyenv = Path("~/.pyenv/versions").expanduser()
    candidates += [str(p) for p in sorted(pyenv.glob(f"{version}.*/bin/python{version}"))]
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def source_hash(architecture: str, python_version: str, root: Path = PROJECT_ROOT) -> str:
    """Changes whenever the bundle would: functions/, the lock, the platform, this module."""
    digest = hashlib.sha256(f"{architecture}|{python_version}".encode())
    digest.update(Path(__file__).read_bytes())  # how the bundle is made
    lock = LockTarget(MACHINES[architecture], python_version).path
    digest.update(lock.read_bytes() if lock.is_file() else b"no lock")
    for path in sorted(p for p in (root / "functions").rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_bundle(output: Path, architecture: str = "arm64", python_version: str = "3.12",
                 budget_mb: int = 150, root: Path = PROJECT_ROOT) -> BundleReport:
    """Install the locked runtime for ``manylinux_2_28_<arch>`` into ``output``, add ``functions/``, trim, compile,
    and check the unzipped size against ``budget_mb`` (raises ``BundleError`` when over)."""
    machine = MACHINES[architecture]
    lock = lambda_lock(architecture, python_version)
    output.mkdir(parents=True, exist_ok=True)
    report = output.parent / f".{output.name}-pip-report.json"
    # Exactly the locked files: hashes required, no resolution (the lock is the closure), wheels only.
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-warn-script-location", "--target", str(output), "--implementation", "cp",
               "--python-version", python_version, "--only-binary=:all:", "--upgrade", "--no-deps",
               "--require-hashes", "--report", str(report),
               "--platform", f"manylinux_2_28_{machine}", "--platform", f"manylinux2014_{machine}", "-r", str(lock)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BundleError(f"pip could not install {lock.name} for {architecture}: {result.stderr.strip()[-2000:]}")
    write_manifest(output, lock, read_lock(lock), report, architecture, python_version)
    report.unlink(missing_ok=True)
    shutil.copytree(root / "functions", output / "functions", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "Dockerfile"))
    trim(output)
    interpreter = find_python(python_version)
    if interpreter is not None:
        compiled = subprocess.run([interpreter, "-m", "compileall", "-q", "-j", "0",
                                   "--invalidation-mode", "unchecked-hash", str(output)],
                                  capture_output=True, text=True, check=False)
        if compiled.returncode != 0:
            raise BundleError(f"compileall failed: {compiled.stdout[-2000:]}{compiled.stderr[-2000:]}")
    size, files = check_budget(output, architecture, budget_mb)
    return BundleReport(output, architecture, python_version, size, files, interpreter is not None)


def write_manifest(bundle: Path, lock: Path, pins: Mapping[str, Any], pip_report: Path, architecture: str,
                   python_version: str) -> None:
    """``MANIFEST_NAME`` in the bundle: the lock it came from and each installed wheel's name, version,
    file and sha256 (from pip's installation report)."""
    installed = json.loads(pip_report.read_text())["install"]
    packages = []
    for item in installed:
        metadata, archive = item["metadata"], item.get("download_info", {})
        digest = archive.get("archive_info", {}).get("hashes", {}).get("sha256", "")
        packages.append({"name": metadata["name"], "version": metadata["version"],
                         "file": archive.get("url", "").rsplit("/", 1)[-1], "sha256": digest})
    manifest = {"architecture": architecture, "python_version": python_version, "lock": lock.name,
                "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest(),
                "packages": sorted(packages, key=lambda p: p["name"].lower())}
    if len(packages) != len(pins):
        raise BundleError(f"pip installed {len(packages)} packages but {lock.name} locks {len(pins)}")
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")


def check_budget(bundle: Path, architecture: str, budget_mb: int) -> tuple[int, int]:
    """(bytes, files) of the bundle; raises ``BundleError`` when it is over ``budget_mb`` unzipped."""
    size, files = measure(bundle)
    if size > budget_mb * 1024 * 1024:
        raise BundleError(f"the {architecture} Lambda bundle is {size / 2**20:.1f} MB unzipped, over its "
                          f"{budget_mb} MB budget (Lambda's limit is 250 MB): trim it or raise bundleBudgetMb")
    return size, files


def trim(bundle: Path) -> None:
    """Remove what the runtime never loads: caches, tests, tooling, headers, stubs, unused AWS API models."""
    for relative in TRIMMED:
        shutil.rmtree(bundle / relative, ignore_errors=True)
    models = bundle / "botocore" / "data"
    if models.is_dir():
        for service in models.iterdir():
            if service.is_dir() and service.name not in AWS_SERVICES_USED:
                shutil.rmtree(service)
    for folder in [p for name in ("__pycache__", "tests") for p in bundle.rglob(name) if p.is_dir()]:
        if folder.relative_to(bundle).parts[0] != "functions":
            shutil.rmtree(folder, ignore_errors=True)
    for path in list(bundle.rglob("*")):
        if path.is_file() and path.suffix in TRIMMED_SUFFIXES:
            path.unlink()


def measure(bundle: Path) -> tuple[int, int]:
    """(total bytes, file count) of a bundle folder."""
    sizes = [p.stat().st_size for p in bundle.rglob("*") if p.is_file()]
    return sum(sizes), len(sizes)


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """CDK local bundling: ``build_bundle`` into the asset's output folder; never falls back to Docker."""

    def __init__(self, architecture: str, python_version: str, budget_mb: int) -> None:
        self.architecture = architecture
        self.python_version = python_version
        self.budget_mb = budget_mb

    def try_bundle(self, output_dir: str, options: Any) -> bool:
        build_bundle(Path(output_dir), self.architecture, self.python_version, self.budget_mb)
        return True
