"""Pin the variant a built store serves, so tests do not depend on which variant a machine's speed gate chose.

The build ships every variant that passed its gates and serves the fastest on the machine that built it: int8
wins on CPUs with fast int8 kernels, fp32 elsewhere. Tests that need a given graph (row-independent fp32 for
dynamic batching, dynamic int8 for its batch-coupled outputs) pin it on a copy of the store.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import orjson

from functions.core.store import LocalStore

ENV_TEST_VARIANT = "MAAS_TEST_VARIANT"
"""Run the whole suite on one variant: ``MAAS_TEST_VARIANT=int8-dynamic make test`` (an fp32 machine then
tests what an int8 machine would serve)."""


VARIANTS = ("fp32", "int8-dynamic", "int8-static", "pruned-fp32", "pruned-int8-dynamic", "pruned-int8-static")
"""The CPU variants a build may serve."""


def pin_variant(store: LocalStore, variant: str, names: Iterable[str] | None = None) -> list[str]:
    """Make every version of ``names`` (default: all models) serve ``variant`` on CPU where that variant shipped
    a file; returns the models pinned. The GPU target (fp16) is left as built."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown CPU variant {variant!r}: one of {', '.join(VARIANTS)}")
    wanted = None if names is None else set(names)
    pinned = []
    for model in sorted((store.root / "models").iterdir()):
        if wanted is not None and model.name not in wanted:
            continue
        for manifest_path in sorted(model.glob("versions/*/manifest.json")):
            manifest = orjson.loads(manifest_path.read_bytes())
            if not any(v["name"] == variant and v.get("file") for v in manifest["variants"]):
                continue
            if manifest["selected"]["cpu"] != variant:
                manifest["selected"]["cpu"] = variant
                manifest["selection_reason"] = f"{variant}: pinned by the tests ({manifest['selection_reason']})"
            manifest_path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
            pinned.append(model.name)
    return sorted(set(pinned))


def pinned_copy(store: LocalStore, root: Path, variant: str, names: Iterable[str]) -> LocalStore:
    """A copy of ``store`` at ``root`` with ``variant`` pinned for ``names``; skips the test where the build
    did not ship that variant for one of them (gates measured on this machine dropped it)."""
    import pytest

    shutil.copytree(store.root, root)
    copy = LocalStore(root)
    wanted = sorted(set(names))
    pinned = pin_variant(copy, variant, wanted)
    if pinned != wanted:
        pytest.skip(f"this machine's build shipped {variant} only for {pinned}, not for all of {wanted}")
    return copy
