"""PSI, bins and reports on synthetic data whose shifts are known exactly (no model involved)."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from functions.core import drift
from functions.core.errors import IntegrityError
from functions.core.manifest import TabularPreprocessing
from functions.core.profile import DriftTracker, input_matrix, parse_profile, prediction_column
from model_build.profile_build import make_profile

FEATURES = ["age", "income", "score", "visits", "tenure"]
SPEC = TabularPreprocessing(features=FEATURES, mean=[0.0] * 5, std=[1.0] * 5)


def _population(rng: np.random.Generator, rows: int) -> np.ndarray:
    return np.column_stack([rng.normal(40, 10, rows), rng.lognormal(10, 0.5, rows), rng.uniform(0, 1, rows),
                            rng.poisson(3, rows), rng.exponential(5, rows)])


def _outputs(rng: np.random.Generator, rows: int, mix: list[float]) -> np.ndarray:
    labels = rng.choice(len(mix), size=rows, p=mix)
    probabilities = rng.uniform(0, 0.3, (rows, len(mix)))
    probabilities[np.arange(rows), labels] = 1.0
    return probabilities / probabilities.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def profile():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    return make_profile(SPEC, "features", {}, "classification", ["a", "b", "c"], _population(rng, 4000),
                        _outputs(rng, 1000, [0.6, 0.3, 0.1]))


def _report(profile, x: np.ndarray, outputs: np.ndarray):  # type: ignore[no-untyped-def]
    tracker = DriftTracker(profile)
    for start in range(0, len(x), 500):  # streamed in chunks like the batch runner and the drift job
        tracker.add_inputs(input_matrix(SPEC, x[start:start + 500]))
    tracker.add_predictions(prediction_column("classification", outputs, profile.prediction))
    return tracker.report()


def test_same_population_shows_no_drift(profile) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    report = _report(profile, _population(rng, 2000), _outputs(rng, 2000, [0.6, 0.3, 0.1]))
    assert report["status"] == "ok", report
    assert report["features_over_threshold"] == [] and report["prediction_drift"] == "ok"
    assert all(f["verdict"] == "ok" for f in report["features"])


def test_shifted_copy_flags_exactly_the_shifted_features_and_the_prediction(profile) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    x = _population(rng, 2000)
    x[:, FEATURES.index("income")] *= 1.8  # scaled
    x[:, FEATURES.index("age")] += 8  # offset by 0.8 standard deviations
    report = _report(profile, x, _outputs(rng, 2000, [0.3, 0.3, 0.4]))  # label mix changed
    assert report["status"] == "drift"
    assert sorted(report["features_over_threshold"]) == ["age", "income"]
    assert {f["name"] for f in report["features"] if f["verdict"] != "ok"} == {"age", "income"}
    assert report["prediction_drift"] == "drift"
    worst = report["prediction"]["worst_bins"][0]
    assert worst == {"bin": "a", "reference": pytest.approx(0.6, abs=0.05), "current": pytest.approx(0.3, abs=0.05)}


def test_psi_matches_the_formula_and_is_zero_for_identical_shares() -> None:
    reference = [0.25, 0.25, 0.5]
    current = np.array([50, 30, 20])
    expected = sum((a - e) * math.log(a / e) for a, e in zip([0.5, 0.3, 0.2], reference, strict=True))
    assert drift.psi(reference, current) == pytest.approx(expected)
    assert drift.psi(reference, np.array([25, 25, 50])) == 0.0
    assert drift.verdict(0.09) == "ok" and drift.verdict(0.1) == "watch" and drift.verdict(0.25) == "drift"


def test_noise_level_follows_the_sample_sizes() -> None:
    assert drift.noise(10, 100, 400) == pytest.approx(9 * (1 / 100 + 1 / 400))
    rng = np.random.default_rng(3)
    reference = rng.normal(size=400)
    edges = drift.quantile_edges(reference)
    shares = drift.shares(drift.bin_counts(reference, edges))
    observed = [drift.psi(shares, drift.bin_counts(rng.normal(size=100), edges), 100) for _ in range(200)]
    assert np.mean(observed) == pytest.approx(drift.noise(10, 100, 400), rel=0.35)


def test_accumulator_in_chunks_equals_one_pass_and_skips_nan() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(size=(1000, 2))
    values[::7, 1] = np.nan
    edges = [drift.quantile_edges(values[:, 0]), drift.quantile_edges(values[:, 1])]
    whole, parts = drift.Accumulator(edges), drift.Accumulator(edges)
    whole.add(values)
    for start in range(0, 1000, 128):
        parts.add(values[start:start + 128])
    assert all((a == b).all() for a, b in zip(whole.counts, parts.counts, strict=True))
    assert whole.counts[0].sum() == 1000 and whole.counts[1].sum() == 1000 - len(range(0, 1000, 7))


def test_discrete_and_constant_columns_get_fewer_bins_and_still_detect_change() -> None:
    constant = np.zeros(500)
    edges = drift.quantile_edges(constant)
    assert edges == [0.0]
    reference = drift.shares(drift.bin_counts(constant, edges))
    assert drift.psi(reference, drift.bin_counts(np.ones(100), edges), 100) > drift.ACT


def test_too_few_rows_get_no_verdict(profile) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    report = _report(profile, _population(rng, 5), _outputs(rng, 5, [0.6, 0.3, 0.1]))
    assert report["status"] == "too_few_rows" and all(f["verdict"] == "too_few_rows" for f in report["features"])


def test_profile_round_trips_as_plain_json_and_garbage_is_refused(profile) -> None:  # type: ignore[no-untyped-def]
    data = profile.to_json()
    assert parse_profile(data) == profile
    assert b"pickle" not in data and orjson.loads(data)["inputs"] == "tabular"
    for bad in (b"not json", b"{}", data.replace(b'"schema": 1', b'"schema": 99'),
                orjson.dumps({**orjson.loads(data), "features": [{"name": "x", "edges": [2.0, 1.0],
                                                                  "proportions": [0.3, 0.3, 0.4]}]})):
        with pytest.raises(IntegrityError):
            parse_profile(bad)
