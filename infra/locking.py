"""The runtime's lock files: one per deploy target (Lambda per CPU and Python, the GPU worker image), each
with exact versions and sha256 hashes, all derived from ``pyproject.toml``.

    python -m infra.locking            # what `make lock` runs: rewrite every lock under locks/

The Lambda locks resolve the runtime requirements (``infra.project.runtime_requirements``) for
``manylinux_2_28`` and the Lambda's Python. The GPU lock is derived from the x86_64 Lambda lock: the same
requirements less the distributions the worker never imports (found by following ``functions.batch.worker``'s
imports), with ``onnxruntime-gpu`` in place of ``onnxruntime``, resolved under the Lambda lock as a constraint
so every shared package keeps the Lambda's exact version.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra.project import PROJECT_ROOT, runtime_requirements

LOCKS = PROJECT_ROOT / "locks"
# Import name -> distribution, for the runtime's packages whose names differ.
DISTRIBUTION_OF = {"botocore": "boto3", "starlette": "fastapi", "onnxruntime": "onnxruntime"}
# Dependencies never installed: tokenizers requires huggingface_hub (and hf-xet, requests, fsspec, ~38 MB) only
# to download from a model hub, which the runtime never does; it imports none of them.
EXCLUDED = ("huggingface-hub",)
GPU_RUNTIME = "onnxruntime-gpu"


@dataclass(frozen=True)
class LockTarget:
    """Where one lock applies: the CPU, the Python, and whether it is the GPU worker image."""

    machine: str  # aarch64 | x86_64
    python_version: str
    gpu: bool = False

    @property
    def path(self) -> Path:
        kind = "gpu" if self.gpu else "lambda"
        return LOCKS / f"{kind}-{self.machine}-py{self.python_version}.txt"

    @property
    def platform(self) -> str:
        return f"{self.machine}-manylinux_2_28"


LAMBDA_TARGETS = tuple(LockTarget(m, v) for m in ("aarch64", "x86_64") for v in ("3.12", "3.13"))
# The worker image (functions/batch/Dockerfile): x86_64, Ubuntu 24.04's Python 3.12.
GPU_TARGET = LockTarget("x86_64", "3.12", gpu=True)
MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}


class LockError(RuntimeError):
    """A lock is missing, unreadable, or disagrees with pyproject.toml."""


@dataclass(frozen=True)
class Pin:
    """One locked distribution: its canonical name, exact version and the accepted sha256 hashes."""

    name: str
    version: str
    hashes: tuple[str, ...]


def lambda_lock(architecture: str, python_version: str) -> Path:
    """The lock the Lambda bundle of this architecture (``arm64``/``x86_64``) and Python installs from."""
    path = LockTarget(MACHINES[architecture], python_version).path
    if not path.is_file():
        raise LockError(f"no lock for the {architecture} Lambda on Python {python_version} ({path.name}): "
                        "run `make lock`")
    return path


def read_lock(path: Path) -> dict[str, Pin]:
    """Canonical name -> ``Pin`` for every ``name==version --hash=...`` entry of a pip requirements lock."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pins: dict[str, Pin] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;]+)", line)
        if match is None:
            raise LockError(f"{path.name}: not an exact pin: {line[:80]!r}")
        hashes = tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        if not hashes:
            raise LockError(f"{path.name}: {match.group(1)} has no hash")
        name = canonicalize_name(match.group(1))
        pins[name] = Pin(name, match.group(2), hashes)
    return pins


def imported_distributions(entry: str, root: Path = PROJECT_ROOT) -> set[str]:
    """Canonical names of the third-party distributions a ``functions`` module reaches through its imports
    (lazy imports inside functions included, ``if TYPE_CHECKING`` blocks excluded)."""
    seen: set[str] = set()
    third_party: set[str] = set()
    pending = [entry]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        source = _module_file(module, root)
        if source is None:
            continue
        for name in module_imports(ast.parse(source.read_text()), module):
            top = name.split(".")[0]
            if top == "functions":
                pending.append(name)
                parts = name.split(".")
                pending.extend(".".join(parts[:i]) for i in range(2, len(parts)))
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(canonicalize_name(DISTRIBUTION_OF.get(top, top)))
    return third_party


def _module_file(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_imports(tree: ast.Module, module: str) -> list[str]:
    """Modules a module imports (absolute names; lazy imports included, TYPE_CHECKING blocks not)."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
               for n in ast.walk(node)}
    names: list[str] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level]
                base = ".".join([*package, base] if base else package)
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]  # may be submodules
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def gpu_requirements(pyproject: Path = PROJECT_ROOT / "pyproject.toml") -> list[str]:
    """The runtime requirements the worker imports, with the GPU build of onnxruntime, plus the ``worker`` extra
    (what only the image carries: pyarrow, over the Lambda bundle's size budget)."""
    import tomllib

    needed = imported_distributions("functions.batch.worker")
    extra = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"].get("worker", [])
    chosen = []
    for requirement in [*runtime_requirements(pyproject), *extra]:
        parsed = Requirement(requirement)
        name = canonicalize_name(parsed.name)
        if name not in needed:
            continue
        if name == "onnxruntime":
            parsed.name = GPU_RUNTIME
        chosen.append(str(parsed))
    return chosen


def lock_problems(requirements: list[str], pins: dict[str, Pin], replaced: dict[str, str] | None = None) -> list[str]:
    """Why a lock does not implement these requirements: a requirement missing or out of its specifier, or a
    locked package nothing in the requirements' dependency closure explains (``replaced`` maps a locked name to
    the requirement it stands for, e.g. onnxruntime-gpu -> onnxruntime)."""
    problems = []
    for requirement in requirements:
        parsed = Requirement(requirement)
        name = canonicalize_name(parsed.name)
        pin = pins.get(name)
        if pin is None:
            problems.append(f"{name} is required ({requirement}) but not locked")
        elif not parsed.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{name}=={pin.version} is locked but pyproject.toml asks for {requirement}")
    explained = dependency_closure(requirements, pins, replaced or {})
    problems += [f"{name}=={pin.version} is locked but nothing in pyproject.toml requires it"
                 for name, pin in sorted(pins.items()) if name not in explained]
    return problems


def dependency_closure(requirements: list[str], pins: dict[str, Pin], replaced: dict[str, str],
                       python_version: str = "3.12", machine: str = "aarch64") -> set[str]:
    """Canonical names reachable from ``requirements`` through the dependencies each locked package declares
    (read from the installed distribution's metadata; markers evaluated for Linux on this CPU and Python)."""
    environment = {"python_version": python_version, "python_full_version": f"{python_version}.0",
                   "platform_machine": machine, "sys_platform": "linux", "platform_system": "Linux",
                   "os_name": "posix", "implementation_name": "cpython", "extra": ""}
    pending = [canonicalize_name(Requirement(r).name) for r in requirements]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or name in EXCLUDED:
            continue
        seen.add(name)
        try:
            declared = importlib.metadata.requires(replaced.get(name, name)) or []
        except importlib.metadata.PackageNotFoundError as exc:
            raise LockError(f"{name} is not installed here: cannot read its dependencies (run `make venv`)") from exc
        for text in declared:
            dependency = Requirement(text)
            if dependency.marker is None or dependency.marker.evaluate(environment):
                pending.append(canonicalize_name(dependency.name))
    return seen


def compile_lock(target: LockTarget, requirements: list[str], constraint: Path | None = None) -> None:
    """Resolve ``requirements`` for ``target`` with uv and write the hashed lock."""
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    LOCKS.mkdir(exist_ok=True)
    inputs = LOCKS / ".requirements.in"
    excludes = LOCKS / ".excludes.txt"
    inputs.write_text("\n".join(requirements) + "\n")
    excludes.write_text("\n".join(EXCLUDED) + "\n")
    command = [uv, "pip", "compile", inputs.relative_to(PROJECT_ROOT).as_posix(), "--quiet", "--generate-hashes",
               "--python-platform", target.platform, "--python-version", target.python_version,
               "--excludes", excludes.relative_to(PROJECT_ROOT).as_posix(),
               "--no-annotate", "--custom-compile-command", "make lock",
               "-o", target.path.relative_to(PROJECT_ROOT).as_posix()]
    if constraint is not None:
        command += ["--constraint", constraint.relative_to(PROJECT_ROOT).as_posix()]
    try:
        result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    finally:
        inputs.unlink(missing_ok=True)
        excludes.unlink(missing_ok=True)
    if result.returncode != 0:
        raise LockError(f"uv could not lock {target.path.name}: {result.stderr.strip()[-2000:]}")


def main() -> int:
    """Rewrite every lock (``make lock``)."""
    requirements = runtime_requirements()
    for target in LAMBDA_TARGETS:
        compile_lock(target, requirements)
        print(f"{target.path.relative_to(PROJECT_ROOT)}: {len(read_lock(target.path))} packages")
    compile_lock(GPU_TARGET, gpu_requirements(), constraint=LockTarget("x86_64", GPU_TARGET.python_version).path)
    print(f"{GPU_TARGET.path.relative_to(PROJECT_ROOT)}: {len(read_lock(GPU_TARGET.path))} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
