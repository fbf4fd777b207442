"""From `maas shadow start` to the promotion gate over records the real runtime wrote: two versions that
disagree on known rows (tests/rollouts/two_versions.py) served on loopback with the shadow on, then the report's
agreement and confusion are exactly those rows, and the gate refuses above that agreement and accepts at it."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
from click.testing import CliRunner, Result

from functions.api.front import create_front
from functions.core import catalog, shadow
from functions.core.capture import DirectorySink
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from maas.cli import main
from tests.api.conftest import LiveServer
from tests.rollouts.two_versions import CANDIDATE, LIVE, MODEL, add_pair, disagrees, rows


def test_report_and_gate_over_served_comparisons(tmp_path: Path) -> None:
    store = add_pair(tmp_path / "store")
    capture = tmp_path / "capture"

    def maas(*args: str) -> Result:
        return CliRunner().invoke(main, [*args, "--store", store.uri])

    assert maas("shadow", "start", MODEL, "--candidate", CANDIDATE).exit_code == 0
    settings = Settings(store=store.uri)
    front = create_front(settings, ModelCache(store, settings))
    front.service._shadows = shadow.ShadowRunner(front.cache, 5.0, DirectorySink(capture / shadow.SHADOW_FOLDER))
    sent = rows(240, seed=11)
    with LiveServer(front) as url, httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(sent), 12):
            assert client.post(f"/v1/models/{MODEL}/predict", json={"instances": sent[start:start + 12]}).status_code \
                == 200
        front.service.shadows.flush()

    differing = sum(disagrees(row) for row in sent)
    result = maas("shadow", "report", MODEL, "--source", str(capture), "--json")
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.output)
    assert (report["candidate"], report["live_version"], report["requests"], report["compared"]) == \
        (CANDIDATE, LIVE, 20, 20)
    assert report["rows_compared"] == 240 and report["agreement"] == (240 - differing) / 240
    confusion = report["confusion"]  # the candidate only moves rows from a to b
    assert confusion["a"]["b"] == differing and "a" not in confusion.get("b", {})
    assert report["candidate_errors"]["rate"] == 0.0 and isinstance(report["latency"]["ratio_p50"], float)
    for side, version in (("live", LIVE), ("candidate", CANDIDATE)):  # both were imported with a profile
        drift = report["drift"][side]
        assert (drift["version"], drift["records"], drift["rows"]) == (version, 20, 240)
        assert drift["status"] in ("ok", "watch", "drift") and drift["prediction_drift"] is not None

    table = maas("shadow", "report", MODEL, "--source", str(capture)).output
    assert f"agreement         {(240 - differing) / 240:.4f} (share of rows with the same label)" in table

    above = f"{(240 - differing) / 240 + 0.001:.4f}"
    refused = maas("promote", MODEL, CANDIDATE, "--alias", "prod", "--require-agreement", above,
                   "--min-compared", "20", "--source", str(capture))
    assert refused.exit_code == 15 and "over 20 compared requests" in refused.output
    assert catalog.route(store, MODEL, "prod").shadow is not None
    accepted = maas("promote", MODEL, CANDIDATE, "--alias", "prod", "--require-agreement",
                    str((240 - differing) / 240), "--min-compared", "20", "--source", str(capture))
    assert accepted.exit_code == 0, accepted.output
    assert f"prod -> {CANDIDATE} (was {LIVE}); shadow of version {CANDIDATE} ended" in accepted.output
    route = catalog.route(store, MODEL, "prod")
    assert route.version == CANDIDATE and route.shadow is None
