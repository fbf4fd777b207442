"""Static checks of the GPU worker's Dockerfile (no Docker engine here: the image is never built by the tests)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from infra.locking import GPU_TARGET
from infra.project import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "functions" / "batch" / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                           if not line.lstrip().startswith("#")))
    parsed = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def problems(parsed: list[tuple[str, str]]) -> list[str]:
    """What breaks the image rules: pinned base, installs only from the GPU lock with hashes, only the code and
    the lock copied in, no piped installers, a non-root user at the end."""
    found = []
    lock = GPU_TARGET.path.relative_to(PROJECT_ROOT).as_posix()
    bases = [args for keyword, args in parsed if keyword == "FROM"]
    if len(bases) != 1 or not re.fullmatch(r"[\w./-]+(@sha256:[0-9a-f]{64}|:\d+(\.\d+)+[\w.-]*)", bases[0]):
        found.append(f"base image not pinned by digest or exact version tag: {bases}")
    for keyword, args in parsed:
        if keyword in ("COPY", "ADD"):
            sources = [w for w in shlex.split(args)[:-1] if not w.startswith("--")]
            if keyword == "ADD" or any(s not in ("functions/", lock) for s in sources):
                found.append(f"{keyword} {args}: only functions/ and {lock} go into the image")
        if keyword == "RUN":
            if re.search(r"\b(curl|wget)\b[^|]*\|\s*(ba|z)?sh", args):
                found.append(f"RUN pipes a download into a shell: {args}")
            for install in re.findall(r"pip3? install[^&;]*", args):
                words = install.split()
                if "--require-hashes" not in words or "--no-deps" not in words or "-r" not in words:
                    found.append(f"pip must install only from the lock with --require-hashes --no-deps: {install}")
    copied = [shlex.split(a)[-1] for k, a in parsed if k == "COPY" and lock in a]
    if not copied or not any(copied[0] in a for k, a in parsed if k == "RUN" and "--require-hashes" in a):
        found.append(f"the lock {lock} is not what pip installs")
    users = [args for keyword, args in parsed if keyword == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        found.append("the image does not end as a non-root USER")
    return found


def test_the_worker_dockerfile_follows_the_image_rules() -> None:
    assert problems(instructions()) == []


def test_the_check_catches_each_broken_rule(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM nvidia/cuda:latest\nCOPY . /app\nRUN curl -sSL https://x.sh | sh\n"
                   "RUN pip install onnxruntime-gpu fastapi\nUSER root\n")
    found = " | ".join(problems(instructions(bad)))
    for rule in ("not pinned", "only functions/", "pipes a download", "--require-hashes", "is not what pip",
                 "non-root"):
        assert rule in found


def test_the_build_context_holds_only_the_code_and_the_gpu_lock() -> None:
    lines = [line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert {line for line in lines if line.startswith("!")} == {
        "!functions/", f"!{GPU_TARGET.path.relative_to(PROJECT_ROOT).as_posix()}"}
