"""Artifact mutation matrix: every malformed artifact gets a 503 (404 only for a version that does not exist),
never a 500; no file outside the disk cache is touched; the other models keep serving.

Versions are written straight into a bucket on moto's server (bypassing ``publish``, as a tamperer would), and
served by the real app over an S3 store with a disk cache, so cache paths are built from manifest fields.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import orjson
import pytest
from onnx import TensorProto, helper, numpy_helper
from starlette.testclient import TestClient

from functions.api.app import create_app
from functions.core.catalog import alias_key, version_prefix
from functions.core.manifest import MANIFEST_FILE
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import S3Store
from tests.reliability.artifacts import MODEL_FILE, graph, manifest, model_bytes, version_files

GOOD = model_bytes()
GOOD_DIGEST = hashlib.sha256(GOOD).hexdigest()
ORIGINAL = model_bytes(graph(name="original"))
"""What unsealed cases were before tampering: never stored intact, so never in the disk cache."""
ROW = {"instances": [[1.0, 2.0]]}
FOREIGN = "com.evil"


@dataclass(frozen=True)
class Case:
    """One tampered version (objects under versions/1, alias documents) and the statuses it may answer."""

    id: str
    files: Callable[[str], dict[str, bytes]]
    aliases: dict[str, bytes] | None = None
    route: str = "version"  # or "alias"
    expect: frozenset[int] = frozenset({503})


def sealed(data: bytes, **changes: object) -> Callable[[str], dict[str, bytes]]:
    """Model bytes with a manifest re-hashed to match them (reaches the structural checks)."""
    return lambda name: version_files(name, data, **changes)


def unsealed(data: bytes) -> Callable[[str], dict[str, bytes]]:
    """Tampered model bytes under the manifest of the original (caught by size or checksum)."""
    return lambda name: {MODEL_FILE: data, MANIFEST_FILE: orjson.dumps(manifest(name, ORIGINAL))}


def manifest_edit(edit: Callable[[dict[str, object]], object]) -> Callable[[str], dict[str, bytes]]:
    def files(name: str) -> dict[str, bytes]:
        doc = manifest(name, GOOD)
        edit(doc)
        return {MODEL_FILE: GOOD, MANIFEST_FILE: orjson.dumps(doc)}
    return files


def raw_manifest(text: bytes) -> Callable[[str], dict[str, bytes]]:
    return lambda name: {MODEL_FILE: GOOD, MANIFEST_FILE: text}


def flip(data: bytes, *positions: float) -> bytes:
    out = bytearray(data)
    for p in positions:
        out[int(len(out) * p) % len(out)] ^= 0x55
    return bytes(out)


def entry(**changes: object) -> Callable[[dict[str, object]], None]:
    def edit(doc: dict[str, object]) -> None:
        doc["files"] = [{"path": MODEL_FILE, "sha256": GOOD_DIGEST, "bytes": len(GOOD), **changes}]
    return edit


def foreign_node(outputs: str = "unused") -> onnx.NodeProto:
    return helper.make_node("Evil", ["x"], [outputs], domain=FOREIGN)


def subgraph_with_foreign(kind: str) -> bytes:
    inner = helper.make_graph([foreign_node("o")], "inner", [], [helper.make_tensor_value_info("o", TensorProto.FLOAT,
                                                                                                None)])
    cond = numpy_helper.from_array(np.array(True), "cond")
    if kind == "If":
        node = helper.make_node("If", ["cond"], ["unused"], then_branch=inner, else_branch=inner)
    elif kind == "Loop":
        node = helper.make_node("Loop", ["", "cond"], ["unused"], body=inner)
    else:
        node = helper.make_node("Scan", ["x"], ["unused"], body=inner, num_scan_inputs=1)
    return model_bytes(graph([node], [cond]))


def function_model(body_domain: str, function_domain: str) -> bytes:
    body = helper.make_function(function_domain, "Twice", ["a"], ["b"],
                                [helper.make_node("Add" if body_domain == "" else "Evil", ["a", "a"], ["b"],
                                                  domain=body_domain)],
                                [helper.make_opsetid("", 17)])
    return model_bytes(graph([helper.make_node("Twice", ["x"], ["unused"], domain=function_domain)]),
                       functions=[body], extra_opsets={function_domain: 1})


def training_model(where: str) -> bytes:
    info = helper.make_training_info(
        algorithm=helper.make_graph([foreign_node("t")] if where == "algorithm" else [], "algorithm", [], []),
        algorithm_bindings=[],
        initialization=helper.make_graph([foreign_node("i")] if where == "initialization" else [], "init", [], []),
        initialization_bindings=[])
    return model_bytes(training=[info])


def external_data_model(in_subgraph: bool) -> bytes:
    tensor = numpy_helper.from_array(np.ones(2, dtype=np.float32), "E")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../etc/passwd")
    if not in_subgraph:
        return model_bytes(graph(initializers=[tensor]))
    inner = helper.make_graph([helper.make_node("Constant", [], ["o"], value=tensor)], "inner", [],
                              [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)])
    cond = numpy_helper.from_array(np.array(True), "cond")
    return model_bytes(graph([helper.make_node("If", ["cond"], ["unused"], then_branch=inner, else_branch=inner)],
                             [cond]))


def alias(version: object) -> bytes:
    return orjson.dumps({"version": version, "previous": [], "updated_at": "t"})


def good(name: str) -> dict[str, bytes]:
    return version_files(name, GOOD)


CASES = [
    # model bytes: truncation, bit flips, appended bytes, sealed and unsealed
    Case("truncated-half-unsealed", unsealed(ORIGINAL[: len(ORIGINAL) // 2])),
    Case("truncated-half-sealed", sealed(GOOD[: len(GOOD) // 2])),
    Case("truncated-10-bytes-sealed", sealed(GOOD[:10])),
    Case("empty-model-sealed", sealed(b"")),
    Case("bit-flip-unsealed", unsealed(flip(ORIGINAL, 0.5))),
    # a sealed flip can land in the weights and leave a valid model: a 200 is right then, a 500 never
    Case("bit-flip-head-sealed", sealed(flip(GOOD, 0.01)), expect=frozenset({200, 503})),
    Case("bit-flip-middle-sealed", sealed(flip(GOOD, 0.5)), expect=frozenset({200, 503})),
    Case("bit-flips-many-sealed", sealed(flip(GOOD, 0.1, 0.3, 0.6, 0.9)), expect=frozenset({200, 503})),
    Case("appended-bytes-unsealed", unsealed(ORIGINAL + b"\x00garbage")),
    Case("appended-bytes-sealed", sealed(GOOD + b"\xff\xff\xff\xff")),
    Case("random-bytes-sealed", sealed(os.urandom(512))),
    Case("model-file-missing", lambda name: {MANIFEST_FILE: orjson.dumps(manifest(name, ORIGINAL))}),
    # manifest edits
    Case("manifest-truncated-json", raw_manifest(orjson.dumps(manifest("x", GOOD))[:100])),
    Case("manifest-binary", raw_manifest(b"\x00\x01\x02")),
    Case("manifest-empty", raw_manifest(b"")),
    Case("manifest-array", raw_manifest(b"[]")),
    Case("manifest-version-integer", manifest_edit(lambda d: d.update(version=1))),
    Case("manifest-claims-other-model", manifest_edit(lambda d: d.update(name="good"))),
    Case("manifest-claims-other-version", manifest_edit(lambda d: d.update(version="7"))),
    Case("selected-variant-missing", manifest_edit(lambda d: d.update(selected={"cpu": "int8"}))),
    Case("variant-file-not-in-files", manifest_edit(lambda d: d.update(files=[]))),
    Case("unknown-manifest-key", manifest_edit(lambda d: d.update(surprise=True))),
    Case("required-key-missing", manifest_edit(lambda d: d.pop("provenance"))),
    Case("labels-wrong-type", manifest_edit(lambda d: d.update(labels="left"))),
    Case("fewer-labels-than-outputs", manifest_edit(lambda d: d.update(labels=["left"]))),
    Case("input-name-mismatch", manifest_edit(
        lambda d: d.update(inputs=[{"name": "pixels", "dtype": "float32", "shape": ["batch", 2]}]))),
    Case("output-name-mismatch", manifest_edit(
        lambda d: d.update(outputs=[{"name": "probs", "dtype": "float32", "shape": ["batch", 2]}]))),
    Case("size-negative", manifest_edit(entry(bytes=-1))),
    # path-like fields: the sha256 names the disk cache file, the path names the store key
    Case("sha256-parent-path", manifest_edit(entry(sha256="../sentinel"))),
    Case("sha256-absolute-path", manifest_edit(entry(sha256="/tmp/maas-sentinel"))),
    Case("sha256-not-hex", manifest_edit(entry(sha256="z" * 64))),
    Case("file-path-parent", manifest_edit(entry(path="../../other/versions/1/model.fp32.onnx"))),
    Case("file-path-absolute", manifest_edit(entry(path="/etc/passwd"))),
    Case("file-path-backslash", manifest_edit(entry(path="..\\model.fp32.onnx"))),
    Case("file-path-nul", manifest_edit(entry(path="model.fp32.onnx\x00.txt"))),
    # alias edits (the version itself is good)
    Case("alias-invalid-json", good, {"prod": b"{not json"}, "alias"),
    Case("alias-empty", good, {"prod": b""}, "alias"),
    Case("alias-integer-version", good, {"prod": alias(1)}, "alias"),
    Case("alias-path-version", good, {"prod": alias("../1")}, "alias"),
    Case("alias-to-missing-version", good, {"prod": alias("9")}, "alias", frozenset({404})),
    # foreign operator domains in every place a graph can hold them, and external data
    Case("foreign-domain-main-graph", sealed(model_bytes(graph([foreign_node()]), extra_opsets={FOREIGN: 1}))),
    Case("foreign-domain-if-branch", sealed(subgraph_with_foreign("If"))),
    Case("foreign-domain-loop-body", sealed(subgraph_with_foreign("Loop"))),
    Case("foreign-domain-scan-body", sealed(subgraph_with_foreign("Scan"))),
    Case("foreign-function-domain", sealed(function_model("", FOREIGN))),
    Case("foreign-domain-inside-function", sealed(function_model(FOREIGN, "local.ok"))),
    Case("foreign-domain-training-initialization", sealed(training_model("initialization"))),
    Case("foreign-domain-training-algorithm", sealed(training_model("algorithm"))),
    Case("external-data-initializer", sealed(external_data_model(False))),
    Case("external-data-in-subgraph", sealed(external_data_model(True))),
]


def test_the_matrix_has_at_least_40_cases() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@dataclass
class Served:
    client: TestClient
    store: S3Store
    cache_dir: Path
    sentinels: dict[Path, bytes]


@pytest.fixture(scope="module")
def served(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import boto3

    bucket = f"maas-mutations-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    store = S3Store(bucket, "store", endpoint_url=moto_endpoint)
    for key, data in good("good").items():
        store.put_bytes(f"{version_prefix('good', '1')}/{key}", data)
    for i, case in enumerate(CASES):
        name = f"m{i:02d}"
        for key, data in case.files(name).items():
            store.put_bytes(f"{version_prefix(name, '1')}/{key}", data)
        for alias_name, document in (case.aliases or {}).items():
            store.put_bytes(alias_key(name, alias_name), document)
    root = tmp_path_factory.mktemp("mutations")
    cache_dir = root / "host" / "cache"
    sentinels = {root / "host" / "sentinel": b"keep me", Path("/tmp/maas-sentinel"): b"keep me too"}
    for path, content in sentinels.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    settings = Settings(store=store.uri, cache_dir=str(cache_dir), alias_ttl_seconds=30)
    with TestClient(create_app(settings, ModelCache(store, settings)), raise_server_exceptions=False) as client:
        yield Served(client, store, cache_dir, sentinels)
    Path("/tmp/maas-sentinel").unlink(missing_ok=True)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_mutation_is_refused_for_that_version_only(served: Served, case: Case) -> None:
    name = f"m{CASES.index(case):02d}"
    url = f"/v1/models/{name}/predict" if case.route == "alias" else f"/v1/models/{name}/versions/1/predict"
    response = served.client.post(url, json=ROW)
    assert response.status_code in case.expect, response.text
    if response.status_code != 200:
        assert {"error", "code"} <= set(response.json())
    assert served.store.bucket not in response.text and "s3://" not in response.text
    assert str(served.cache_dir) not in response.text
    # nothing outside the cache touched, and only sha256-named files inside it
    for path, content in served.sentinels.items():
        assert path.read_bytes() == content
    assert all(len(p.name.split(".")[0]) == 64 for p in served.cache_dir.glob("*"))
    # the other models keep serving
    assert served.client.post("/v1/models/good/versions/1/predict", json=ROW).status_code == 200


def test_the_model_list_survives_every_mutation(served: Served) -> None:
    listed = served.client.get("/v1/models")
    assert listed.status_code == 200 and len(listed.json()["models"]) == len(CASES) + 1
    aliased = {m["name"]: m["aliases"] for m in listed.json()["models"]}
    broken = [f"m{i:02d}" for i, c in enumerate(CASES) if c.id in {"alias-invalid-json", "alias-empty",
                                                                    "alias-integer-version", "alias-path-version"}]
    assert broken and all(aliased[name] == {} for name in broken)  # unusable aliases left out, nothing else
