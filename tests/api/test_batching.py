"""Dynamic batching: concurrent requests share session runs and get exactly the answers they get alone."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from functions.core import catalog
from functions.core.batching import RunBatcher
from functions.core.inference import shape_predictions
from functions.core.model_cache import ROW_COUPLED_OPS, ModelCache, rows_independent
from functions.core.onnx_wire import inspect_model
from functions.core.preprocessing import Tensors
from functions.core.service import ModelRef, PredictionService
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.pinned import pin_variant, pinned_copy

DIGITS = load_digits().images[:24].astype(int).tolist()
CANCER = load_breast_cancer().data[:24].tolist()


class CountingRun:
    """The service's real session run, recording the rows of every run; ``poison`` fails runs holding it."""

    def __init__(self, poison: float | None = None) -> None:
        self.rows: list[int] = []
        self.poison = poison

    def __call__(self, model: Any, tensors: Tensors) -> Any:
        first = next(iter(tensors.values()))
        self.rows.append(len(first))
        if self.poison is not None and bool((first == self.poison).any()):
            raise RuntimeError("poisoned run")
        return PredictionService.run(model, tensors)


@pytest.fixture(scope="module")
def fp32_store(built_store: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """The demo models serving fp32 (row-independent) whatever variant this machine's build chose."""
    return pinned_copy(built_store, tmp_path_factory.mktemp("fp32") / "store", "fp32", ["digits-cnn", "cancer-mlp"])


@pytest.fixture
def service(fp32_store: LocalStore) -> PredictionService:
    settings = Settings(store=fp32_store.uri)
    return PredictionService(ModelCache(fp32_store, settings), settings)


def _alone(service: PredictionService, name: str, instances: list[Any]) -> list[Any]:
    model = service.cache.get(name)
    return [shape_predictions(model, PredictionService.run(model, service.encode(model, [i])))[0]
            for i in instances]


async def _together(service: PredictionService, batcher: RunBatcher, name: str,
                    requests: list[list[Any]], checked: bool = True) -> list[Any]:
    """The requests at once; ``checked`` skips the first-shared-run check (tests that count runs)."""
    model = await service.model(ModelRef.checked(name))
    model.join_checked = model.join_checked or checked

    async def one(instances: list[Any]) -> Any:
        return shape_predictions(model, await batcher.run(model, service.encode(model, instances)))

    return await asyncio.gather(*(one(r) for r in requests), return_exceptions=True)


@pytest.mark.parametrize(("name", "rows"), [("digits-cnn", DIGITS), ("cancer-mlp", CANCER)])
def test_concurrent_requests_share_one_run_and_get_their_own_answers(service: PredictionService, name: str,
                                                                     rows: list[Any]) -> None:
    run = CountingRun()
    batcher = RunBatcher(run, 64)
    requests = [[row] for row in rows]
    first = asyncio.run(_together(service, batcher, name, requests, checked=False))
    assert run.rows == [len(rows)] + [1] * len(rows)  # the first shared run is checked against runs alone
    assert service.cache.get(name).join_checked and service.cache.get(name).joinable
    run.rows.clear()
    again = asyncio.run(_together(service, batcher, name, requests, checked=False))
    assert run.rows == [len(rows)]
    assert [a[0] for a in first] == [a[0] for a in again] == _alone(service, name, rows)  # the same numbers


def test_a_run_never_exceeds_max_rows(service: PredictionService) -> None:
    run = CountingRun()
    requests = [DIGITS[i:i + 3] for i in range(0, 24, 3)]
    answers = asyncio.run(_together(service, RunBatcher(run, 7), "digits-cnn", requests))
    assert max(run.rows) <= 7 and sum(run.rows) == 24
    assert [p for a in answers for p in a] == _alone(service, "digits-cnn", DIGITS)


def test_max_rows_one_runs_every_request_alone(service: PredictionService) -> None:
    run = CountingRun()
    asyncio.run(_together(service, RunBatcher(run, 1), "digits-cnn", [[row] for row in DIGITS[:5]]))
    assert run.rows == [1] * 5


def test_a_failed_shared_run_fails_only_the_request_that_caused_it(service: PredictionService) -> None:
    poisoned = [[15.5] * 8 for _ in range(8)]  # a valid image; no digit image has a 15.5 pixel
    run = CountingRun(poison=15.5 / 16)
    requests = [[row] for row in DIGITS[:4]] + [[poisoned]] + [[row] for row in DIGITS[4:8]]
    answers = asyncio.run(_together(service, RunBatcher(run, 64), "digits-cnn", requests))
    assert isinstance(answers[4], RuntimeError)
    good = [a[0] for i, a in enumerate(answers) if i != 4]
    assert good == _alone(service, "digits-cnn", DIGITS[:8])
    assert run.rows[0] == 9 and run.rows[1:] == [1] * 9  # the shared run, then each request on its own


def test_tensors_of_different_layouts_never_share_a_run(service: PredictionService) -> None:
    model = service.cache.get("digits-cnn")
    name = model.manifest.inputs[0].name
    run = CountingRun()
    batcher = RunBatcher(run, 64)

    async def both() -> tuple[Any, Any]:
        good = batcher.run(model, service.encode(model, DIGITS[:2]))
        odd = batcher.run(model, {name: np.zeros((3, 1, 4, 4), dtype=np.float32)})  # the session refuses it
        return await asyncio.gather(good, odd, return_exceptions=True)

    good, odd = asyncio.run(both())
    assert sorted(run.rows) == [2, 3]
    assert isinstance(odd, Exception) and not isinstance(good, Exception)
    assert good.shape == (2, 10)


def test_a_cancelled_request_leaves_the_others_answered(service: PredictionService) -> None:
    model = service.cache.get("digits-cnn")
    model.join_checked = True
    run = CountingRun()
    batcher = RunBatcher(run, 64)

    async def go() -> list[Any]:
        tasks = [asyncio.ensure_future(batcher.run(model, service.encode(model, [row]))) for row in DIGITS[:5]]
        await asyncio.sleep(0)  # every request has joined the group
        tasks[2].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(go())
    assert isinstance(results[2], asyncio.CancelledError)
    assert run.rows == [4]
    kept = [r for i, r in enumerate(results) if i != 2]
    assert [shape_predictions(model, r)[0] for r in kept] == _alone(service, "digits-cnn",
                                                                    [DIGITS[i] for i in (0, 1, 3, 4)])


def test_models_whose_rows_are_not_independent_never_join(service: PredictionService) -> None:
    model = dataclasses.replace(service.cache.get("digits-cnn"), joinable=False)
    run = CountingRun()
    batcher = RunBatcher(run, 64)

    async def go() -> None:
        await asyncio.gather(*(batcher.run(model, service.encode(model, [row])) for row in DIGITS[:3]))

    asyncio.run(go())
    assert run.rows == [1, 1, 1]


class _Session:
    """What ``rows_independent`` reads from an onnxruntime session: the shapes of inputs and outputs."""

    def __init__(self, inputs: list[list[Any]], outputs: list[list[Any]]) -> None:
        self.inputs, self.outputs = inputs, outputs

    def get_inputs(self) -> list[Any]:
        return [SimpleNamespace(shape=shape) for shape in self.inputs]

    def get_outputs(self) -> list[Any]:
        return [SimpleNamespace(shape=shape) for shape in self.outputs]


def test_rows_independent_needs_one_named_batch_axis_and_no_dynamic_quantization() -> None:
    assert rows_independent({"Conv", "Gemm"}, _Session([["batch", 1, 8, 8]], [["batch", 10]]))
    assert rows_independent({"Gather", "LSTM"}, _Session([["N", 32], ["N", 32]], [["N", 4]]))
    assert not rows_independent({"Gemm"}, _Session([[None, 30]], [[None, 2]]))  # unnamed: may differ
    assert not rows_independent({"Gemm"}, _Session([[1, 30]], [[1, 2]]))
    assert not rows_independent({"Transpose"}, _Session([["batch", 30]], [[30, "batch"]]))
    assert not rows_independent({"Gemm"}, _Session([["N", 4], ["M", 4]], [["N", 2]]))
    assert not rows_independent({"Gemm"}, _Session([["batch", 30], [4]], [["batch", 2]]))
    assert not rows_independent({"ReduceSum"}, _Session([["batch", 30]], [[]]))
    dynamic_int8 = {"DynamicQuantizeLinear", "MatMulInteger"}
    assert not rows_independent(dynamic_int8, _Session([["batch", 30]], [["batch", 2]]))


@pytest.mark.parametrize("variant", ["fp32", "int8-static", "int8-dynamic"])
def test_loaded_models_know_whether_their_rows_may_join(built_store: LocalStore, tmp_path: Path,
                                                        variant: str) -> None:
    """Which variant a build serves depends on the building machine's speed: every shipped variant is checked.
    Dynamic int8 (activation scales computed per run) must never join runs; fp32 and static int8 may."""
    shutil.copytree(built_store.root, tmp_path / "store")
    store = LocalStore(tmp_path / "store")
    served = pin_variant(store, variant)
    if not served:
        pytest.skip(f"this machine's build shipped {variant} for no model")
    cache = ModelCache(store, Settings(store=store.uri))
    for name in served:
        assert cache.get(name).variant.name == variant
        model = cache.get(name)
        data = store.get_bytes(f"{catalog.version_prefix(name, model.version)}/{model.variant.file}")
        assert model.joinable == (not inspect_model(data).op_types & ROW_COUPLED_OPS), name
        assert model.joinable == (variant != "int8-dynamic"), name


def test_concurrent_http_requests_get_the_answers_they_get_alone(client: httpx.Client, base_url: str) -> None:
    path = "/v1/models/digits-cnn/predict"
    alone = [client.post(path, json={"instances": [row]}).json() for row in DIGITS]
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        together = list(pool.map(lambda row: httpx.post(base_url + path, json={"instances": [row]}, timeout=30).json(),
                                 DIGITS * 3))
    assert together == alone * 3


def test_max_batch_rows_is_read_from_the_environment() -> None:
    assert Settings.from_env({"MAAS_MAX_BATCH_ROWS": "8"}).max_batch_rows == 8
    assert Settings().max_batch_rows == 64
    with pytest.raises(ValueError, match="MAAS_MAX_BATCH_ROWS"):
        Settings.from_env({"MAAS_MAX_BATCH_ROWS": "0"})


def _tiny_session(node: Any, output_shape: list[Any]) -> Any:
    """An onnxruntime session over one node taking x [batch, 2] (built in memory, no file)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([node], "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _rows_of(session: Any, values: list[list[float]]) -> list[Any]:
    """Each one-row request through a batcher at once, over a stand-in model the graph check passed."""
    model = SimpleNamespace(joinable=True, join_checked=False)
    batcher = RunBatcher(lambda _, tensors: session.run(None, tensors)[0], 64)

    async def go() -> list[Any]:
        requests = [batcher.run(model, {"x": np.array([v], dtype=np.float32)}) for v in values]  # type: ignore[arg-type]
        return await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), 10)

    results = asyncio.run(go())
    results.append(model)
    return results


def test_a_graph_that_mixes_rows_is_caught_by_the_first_shared_run() -> None:
    """Softmax over the batch axis passes the graph check (one named batch axis) but mixes rows: the first
    shared run differs from the runs alone, so every request gets its own answer and the model stops joining."""
    from onnx import helper

    session = _tiny_session(helper.make_node("Softmax", ["x"], ["y"], axis=0), ["batch", 2])
    *answers, model = _rows_of(session, [[1.0, 2.0], [3.0, 5.0]])
    assert [a.tolist() for a in answers] == [[[1.0, 1.0]], [[1.0, 1.0]]]  # softmax over one row, as alone
    assert model.join_checked and not model.joinable


def test_an_output_without_rows_never_leaves_a_request_waiting() -> None:
    from onnx import helper

    session = _tiny_session(helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0), [])
    *answers, _ = _rows_of(session, [[1.0, 2.0], [3.0, 5.0]])
    assert [float(a) for a in answers] == [3.0, 8.0]


class _Interrupt(BaseException):
    """Not an Exception: escapes every ``except Exception``."""


def test_an_interrupted_run_fails_every_waiting_request_instead_of_hanging() -> None:
    def interrupted(model: Any, tensors: Tensors) -> Any:
        raise _Interrupt

    batcher = RunBatcher(interrupted, 64)
    model = SimpleNamespace(joinable=True, join_checked=True)

    async def go() -> list[Any]:
        requests = [batcher.run(model, {"x": np.zeros((1, 2), np.float32)}) for _ in range(3)]  # type: ignore[arg-type]
        return await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), 10)

    results = asyncio.run(go())
    assert all(isinstance(r, RuntimeError) and "interrupted" in str(r) for r in results)


def test_a_group_left_by_a_stopped_loop_does_not_capture_later_requests(service: PredictionService) -> None:
    model = service.cache.get("digits-cnn")
    batcher = RunBatcher(PredictionService.run, 64)
    tensors = service.encode(model, [DIGITS[0]])
    old = asyncio.new_event_loop()
    task = old.create_task(batcher.run(model, tensors))
    old.call_soon(old.stop)  # stops before the group's flush, which was queued after this
    old.run_forever()
    assert not task.done()
    old.close()

    async def later() -> Any:
        return await asyncio.wait_for(batcher.run(model, tensors), 10)

    assert asyncio.run(later()).tolist() == PredictionService.run(model, tensors).tolist()
