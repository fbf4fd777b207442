"""Shadow traffic through the real request path: live answers never depend on the candidate, and the comparison
records carry exactly how the two versions differ.

Served by uvicorn on loopback (what ``maas serve`` runs) and by the Lambda handler stack (Mangum over the
front, with a stand-in of the runtime's client: see tests/lambda_runtime.py), over a store holding two
imported versions that disagree on known rows (tests/rollouts/two_versions.py).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from mangum import Mangum

from functions.api.front import create_front
from functions.core import catalog, rollout, shadow
from functions.core.capture import DirectorySink
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.api.conftest import LiveServer
from tests.events import LambdaContext, http_api_event
from tests.lambda_runtime import invoke, runtime_client_class
from tests.rollouts.two_versions import CANDIDATE, LIVE, MODEL, add_pair, disagrees, graph, rows

BROKEN, OTHER_INPUTS, MISSING = "3", "4", "9"


@pytest.fixture(scope="module")
def pair_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pair 1 (prod) and 2 (the candidate that disagrees on known rows), 3 (2 with a flipped bit in its model
    file) and 4 (a graph that takes other features)."""
    root = tmp_path_factory.mktemp("pair") / "store"
    store = add_pair(root)
    versions = root / "models" / MODEL / "versions"
    shutil.copytree(versions / CANDIDATE, versions / BROKEN)
    manifest = versions / BROKEN / "manifest.json"
    manifest.write_text(manifest.read_text().replace(f'"version": "{CANDIDATE}"', f'"version": "{BROKEN}"'))
    shipped = catalog.read_manifest(store, MODEL, BROKEN)
    model_file = versions / BROKEN / str(shipped.variant(shipped.selected["cpu"]).file)
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x10
    model_file.write_bytes(bytes(data))
    _import_other_inputs(store, root.parent)
    return root


def _import_other_inputs(store: LocalStore, tmp: Path) -> None:
    from model_build.importers.pipeline import import_model
    from model_build.importers.source import ImportOptions

    source, sample = tmp / "other.onnx", tmp / "other.csv"
    source.write_bytes(graph(0.0))
    sample.write_text("g0,g1\n" + "\n".join(f"{r['f0']},{r['f1']}" for r in rows(100, seed=2)) + "\n")
    import_model(source, ImportOptions(name=MODEL, labels=("a", "b"), sample=sample, quick=True), store)
    catalog.promote(store, MODEL, "1", "prod")


@pytest.fixture
def store(pair_root: Path, tmp_path: Path) -> LocalStore:
    """A copy per test: each one sets its own rollouts."""
    root = tmp_path / "store"
    shutil.copytree(pair_root, root)
    return LocalStore(root)


class HangingStore(LocalStore):
    """Reads of one version's files wait until released (a candidate whose store hangs)."""

    def __init__(self, root: Path, version: str) -> None:
        super().__init__(root)
        self.prefix = f"models/{MODEL}/versions/{version}/"
        self.release = threading.Event()
        self.waiting = threading.Event()

    def get_bytes(self, key: str) -> bytes:
        if key.startswith(self.prefix):
            self.waiting.set()
            self.release.wait(30)
        return super().get_bytes(key)


def _front(store: LocalStore, sink_dir: Path, budget: float = 5.0) -> Any:
    settings = Settings(store=store.uri, shadow_budget_seconds=budget)
    front = create_front(settings, ModelCache(store, settings))
    front.service._shadows = shadow.ShadowRunner(front.cache, budget, DirectorySink(sink_dir))
    return front


def _records(folder: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for path in sorted(folder.rglob("*.jsonl")) for line in path.read_bytes().splitlines()]


REQUESTS: list[tuple[str, bytes]] = [
    ("/v1/models/pair/predict", orjson.dumps({"instances": rows(5, seed=3)})),
    ("/v1/models/pair:predict?alias=prod", orjson.dumps({"instances": rows(2, seed=4)})),
    ("/v1/models/pair/predict", orjson.dumps({"instances": [{"f0": 1.0}]})),  # 422: a feature is missing
    ("/v2/models/pair/infer", orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2],
                                                        "data": [0.5, 0.0, -1.0, 2.0]}]})),
    ("/v1/models/pair/versions/1/predict", orjson.dumps({"instances": rows(1, seed=5)})),  # explicit: never shadowed
]


def _answers(url: str) -> list[tuple[int, bytes]]:
    with httpx.Client(base_url=url, timeout=30) as client:
        return [(r.status_code, r.content) for r in (client.post(path, content=body,
                                                                 headers={"content-type": "application/json"})
                                                     for path, body in REQUESTS)]


@pytest.mark.parametrize("candidate", [CANDIDATE, BROKEN, OTHER_INPUTS, MISSING, "hangs"])
def test_live_answers_are_the_same_bytes_with_shadow_on_and_off(store: LocalStore, tmp_path: Path,
                                                                  candidate: str) -> None:
    """Off, then on at rate 1 with a candidate that works, cannot load, rejects the instances, is missing from
    the store, or hangs past the budget: the same statuses and bodies, and the candidate's trouble is only its
    record's ``candidate_error``."""
    with LiveServer(_front(store, tmp_path / "off")) as url:
        off = _answers(url)
    hangs = candidate == "hangs"
    version = CANDIDATE if hangs else candidate
    _set_shadow(store, version)
    served = HangingStore(store.root, version) if hangs else store
    front = _front(served, tmp_path / "on", budget=0.3)
    try:
        with LiveServer(front) as url:
            on = _answers(url)
            if hangs:  # the answers came back; the candidate then reached its store, which is still hung
                assert isinstance(served, HangingStore) and served.waiting.wait(10)
                assert not served.release.is_set()
            front.service.shadows.flush()
    finally:
        if isinstance(served, HangingStore):
            served.release.set()
    assert on == off
    assert [status for status, _ in on] == [200, 200, 422, 200, 200]
    records = _records(tmp_path / "on")
    assert len(records) == 3 and {r["request_id"] for r in records} and not _records(tmp_path / "off")
    expected_error = {CANDIDATE: None, BROKEN: "model_unavailable", OTHER_INPUTS: "invalid_input",
                      MISSING: "not_found", "hangs": "timeout"}[candidate]
    # v1 rows name their features (4 takes others: rejected); v2 rows are positional (4 takes them)
    errors = sorted((r["inputs"] and "f0" in r["inputs"][0], r["candidate_error"] or "") for r in records)
    v2_error = "" if candidate == OTHER_INPUTS else expected_error or ""
    assert errors == sorted([(True, expected_error or ""), (True, expected_error or ""), (True, v2_error)])
    assert all(r["version"] == LIVE and r["candidate"] == version and r["alias"] == "prod" for r in records)


def _set_shadow(store: LocalStore, candidate: str, rate: float = 1.0) -> None:
    if candidate == MISSING:  # set_shadow refuses a version that does not exist: deleted after the start
        record = catalog.read_alias(store, MODEL, "prod")
        assert record is not None
        document = {**record.to_dict(), "shadow": {"candidate": MISSING, "rate": rate, "started_at": "now"}}
        store.put_bytes(catalog.alias_key(MODEL, "prod"), orjson.dumps(document))
        return
    catalog.set_shadow(store, MODEL, "prod", rollout.new_shadow(candidate, rate, catalog.now()))


def test_agreement_is_exactly_the_rows_where_the_versions_differ(store: LocalStore, tmp_path: Path) -> None:
    _set_shadow(store, CANDIDATE)
    front = _front(store, tmp_path / "records")
    sent = rows(240, seed=7)
    with LiveServer(front) as url, httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(sent), 24):
            answer = client.post("/v1/models/pair/predict", json={"instances": sent[start:start + 24]})
            assert answer.status_code == 200 and answer.json()["version"] == LIVE
        front.service.shadows.flush()
    records = _records(tmp_path / "records")
    assert len(records) == 10 and all(r["candidate_error"] is None for r in records)
    assert {r["task"] for r in records} == {"classification"}
    by_row = [(row, agree) for r in records for row, agree in zip(r["inputs"], r["agree"], strict=True)]
    assert sorted(map(str, (row for row, _ in by_row))) == sorted(map(str, sent))
    assert all(agree == (not disagrees(row)) for row, agree in by_row)
    differing = sum(disagrees(row) for row in sent)
    assert 20 < differing < 80  # the fixture's rows do exercise both outcomes
    for r in records:
        for live, candidate, agree in zip(r["live"], r["candidate_outputs"], r["agree"], strict=True):
            assert (live["label"] == candidate["label"]) == agree
        assert isinstance(r["live_ms"], float) and isinstance(r["candidate_ms"], float)  # both measured


def test_a_sampled_rate_shadows_a_share_of_requests(store: LocalStore, tmp_path: Path) -> None:
    _set_shadow(store, CANDIDATE, rate=0.25)
    front = _front(store, tmp_path / "records")
    with LiveServer(front) as url, httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(200):
            assert client.post("/v1/models/pair/predict", json={"instances": rows(1)}).status_code == 200
        front.service.shadows.flush()
    count = len(_records(tmp_path / "records"))
    assert 20 <= count <= 80  # 50 expected; 4.9 standard deviations either side


class Journal:
    """A sink noting when records are written, beside the runtime client's posts."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.records: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any], line: bytes) -> None:
        self.events.append(f"compared {record['request_id']}")
        self.records.append(orjson.loads(line))


def test_in_lambda_the_candidate_runs_after_the_runtime_posts_the_response(store: LocalStore) -> None:
    _set_shadow(store, CANDIDATE)
    settings = Settings(store=store.uri, max_batch_rows=1)
    front = create_front(settings, ModelCache(store, settings))
    events: list[str] = []
    journal = Journal(events)
    front.service._shadows = shadow.ShadowRunner(front.cache, 5.0, journal)
    client_class = runtime_client_class()
    original = client_class.post_invocation_result

    def post(self: Any, invoke_id: str, *args: Any, **kwargs: Any) -> None:
        events.append(f"posted {invoke_id}")
        original(self, invoke_id, *args, **kwargs)

    client_class.post_invocation_result = post
    assert shadow.start_after_response(front.service.shadows, client_class)
    handler = Mangum(front, lifespan="off")
    event = http_api_event("POST", "/v1/models/pair/predict", orjson.dumps({"instances": [{"f0": 0.5, "f1": 0.0}]}))
    answer = handler(event, _Context("req-0"))
    assert answer["statusCode"] == 200 and events == [] and len(front.service.shadows.pending) == 1
    client_class().post_invocation_result("req-0", "{}")
    assert events == ["posted req-0", "compared req-0"]
    assert invoke(client_class(), handler, event, _Context("req-1"))["statusCode"] == 200
    assert events[2:] == ["posted req-1", "compared req-1"]
    assert [r["agree"] for r in journal.records] == [[False], [False]]


class _Context(LambdaContext):
    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id


def test_in_lambda_the_first_shadowed_request_sets_up_the_post_hook(store: LocalStore, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing shadow-related runs at import (cold start): the first request with a shadow makes the runner,
    which finds Lambda's runtime client and runs this very comparison after the post."""
    import sys
    import types

    _set_shadow(store, CANDIDATE)
    client_class = runtime_client_class()
    module = types.ModuleType("lambda_runtime_client")
    module.LambdaRuntimeClient = client_class  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lambda_runtime_client", module)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "maas-api")
    settings = Settings(store=store.uri, max_batch_rows=1)
    front = create_front(settings, ModelCache(store, settings))
    assert front.service._shadows is None
    event = http_api_event("POST", "/v1/models/pair/predict", orjson.dumps({"instances": [{"f0": 0.5, "f1": 0.0}]}))
    answer = Mangum(front, lifespan="off")(event, _Context("req-0"))
    assert answer["statusCode"] == 200
    runner = front.service.shadows
    assert runner.after_post and len(runner.pending) == 1
    capsys.readouterr()
    client_class().post_invocation_result("req-0", "{}")
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if '"maas_shadow"' in line]
    assert [(r["request_id"], r["agree"]) for r in lines] == [("req-0", [False])]
