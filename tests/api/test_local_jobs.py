"""Asynchronous jobs on a local store (``maas serve``): submit, upload to the server itself, status, fetch;
through the Python client and ``maas jobs`` (issue 17)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from functions.core.errors import ApiRejectedError
from maas.client import Client
from tests.api.samples import DIABETES_ROW

ROOT = Path(__file__).resolve().parents[2]


def _csv(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["customer", *DIABETES_ROW])
    for i in range(rows):
        writer.writerow([f"c,{i}", *DIABETES_ROW.values()] if i != 3 else ["c,bad", "x", *list(
            DIABETES_ROW.values())[1:]])
    return out.getvalue().encode()


def _wait(client: Client, job_id: str) -> dict[str, object]:
    for _ in range(600):  # bounded polling; no timing is asserted
        job = client.job(job_id)
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError("the job did not finish")


def test_submit_upload_status_fetch_with_the_client(base_url: str) -> None:
    client = Client(base_url)
    data = _csv(20)
    job = client.submit_job("diabetes-mlp", "csv", len(data), id_column="customer")
    assert job["upload"]["method"] == "PUT" and job["upload"]["url"].startswith(base_url)
    assert client.job(job["job_id"])["status"] == "pending"
    client.upload(job["upload"], data)
    done = _wait(client, job["job_id"])
    assert done["status"] == "succeeded", done
    assert done["rows"] == {"in": 20, "ok": 19, "failed": 1}
    outputs = done["outputs"]
    assert isinstance(outputs, dict)
    predictions = [json.loads(line) for line in client.fetch(outputs["predictions"]).splitlines()]
    assert [p["id"] for p in predictions] == [f"c,{i}" for i in range(20) if i != 3]
    [error] = [json.loads(line) for line in client.fetch(outputs["errors"]).splitlines()]
    assert error["id"] == "c,bad" and error["line"] == 5
    with pytest.raises(ApiRejectedError) as again:  # the upload token is single-use
        client.upload(job["upload"], data)
    assert again.value.status == 403


def test_upload_is_size_bounded_and_token_checked(base_url: str) -> None:
    client = Client(base_url)
    job = client.submit_job("diabetes-mlp", "csv", 10)
    with pytest.raises(ApiRejectedError) as too_big:
        client.upload(job["upload"], b"x" * 11)
    assert too_big.value.status == 413 and "maas jobs submit" in str(too_big.value)  # the CLI's way in
    wrong = {**job["upload"], "url": job["upload"]["url"].split("token=")[0] + "token=" + "0" * 32}
    with pytest.raises(ApiRejectedError) as forbidden:
        client.upload(wrong, b"a")
    assert forbidden.value.status == 403
    assert client.job(job["job_id"])["status"] == "pending"


@pytest.mark.parametrize(("body", "status"), [
    ({"format": "xlsx", "bytes": 10}, 422), ({"format": "csv", "bytes": 0}, 422),
    ({"format": "csv", "bytes": True}, 422), ({"format": "csv", "bytes": 10, "id_column": ""}, 422),
])
def test_bad_job_requests_are_4xx(base_url: str, body: dict[str, object], status: int) -> None:
    request = urllib.request.Request(f"{base_url}/v1/models/diabetes-mlp/jobs", data=json.dumps(body).encode(),
                                     method="POST", headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == status
    caught.value.close()


def test_unknown_jobs_and_models_are_404(base_url: str) -> None:
    client = Client(base_url)
    for call in (lambda: client.job("0" * 32), lambda: client.job("nope"),
                 lambda: client.submit_job("no-such-model", "csv", 10)):
        with pytest.raises(ApiRejectedError) as caught:
            call()
        assert caught.value.status == 404


def test_maas_jobs_submit_status_fetch(base_url: str, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(_csv(5))

    def maas(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "maas", "jobs", *args, "--url", base_url], cwd=ROOT,
                              env=os.environ, capture_output=True, text=True, timeout=120, check=False)

    submitted = maas("submit", "diabetes-mlp", "--input", str(source), "--id-column", "customer")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["job_id"]
    assert _wait(Client(base_url), job_id)["status"] == "succeeded"
    status = maas("status", job_id)
    assert json.loads(status.stdout)["rows"] == {"in": 5, "ok": 4, "failed": 1}
    fetched = maas("fetch", job_id, "--output", str(tmp_path / "out"))
    assert fetched.returncode == 0, fetched.stderr
    assert len((tmp_path / "out/predictions.jsonl").read_text().splitlines()) == 4
    assert json.loads((tmp_path / "out/report.json").read_text())["rows"]["in"] == 5
    again = maas("fetch", job_id, "--output", str(tmp_path / "out"))  # never overwrites, as `maas batch`
    assert again.returncode == 6 and "already holds" in again.stderr
    assert len((tmp_path / "out/predictions.jsonl").read_text().splitlines()) == 4


def _parquet(path: Path, rows: int) -> Path:
    """A diabetes Parquet file with an id column, two row groups and one null feature (an error row)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, object] = {"customer": [f"p-{i}" for i in range(rows)]}
    columns.update({name: [value] * rows for name, value in DIABETES_ROW.items()})
    columns["bmi"] = [None if i == 2 else DIABETES_ROW["bmi"] for i in range(rows)]
    pq.write_table(pa.table(columns), path, row_group_size=max(1, rows // 2))
    return path


def test_parquet_in_and_out_through_maas_jobs(base_url: str, tmp_path: Path) -> None:
    """A Parquet upload with output_format=parquet through the CLI, the server's uvicorn and the result download:
    pyarrow reads the predictions back; a bad Parquet file is a failed job with its reason, never a 5xx."""
    import pyarrow.parquet as pq

    source = _parquet(tmp_path / "in.parquet", 12)

    def maas(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "maas", "jobs", *args, "--url", base_url], cwd=ROOT,
                              env=os.environ, capture_output=True, text=True, timeout=120, check=False)

    submitted = maas("submit", "diabetes-mlp", "--input", str(source), "--id-column", "customer",
                     "--output-format", "parquet")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["job_id"]
    done = _wait(Client(base_url), job_id)
    assert done["status"] == "succeeded" and done["format"] == "parquet" and done["output_format"] == "parquet"
    assert done["rows"] == {"in": 12, "ok": 11, "failed": 1}
    outputs = done["outputs"]
    assert isinstance(outputs, dict) and outputs["predictions"].endswith(f"/v1/jobs/{job_id}/files/predictions.parquet")
    fetched = maas("fetch", job_id, "--output", str(tmp_path / "out"))
    assert fetched.returncode == 0, fetched.stderr
    table = pq.read_table(tmp_path / "out/predictions.parquet")
    assert table.num_rows == 11 and table.column("id").to_pylist() == [f"p-{i}" for i in range(12) if i != 2]
    assert table.column("line").to_pylist() == [i + 1 for i in range(12) if i != 2]
    assert json.loads((tmp_path / "out/errors.jsonl").read_text())["id"] == "p-2"

    client = Client(base_url)
    for bad in (source.read_bytes()[:-20], b"PAR1 not really parquet"):  # truncated; not Parquet at all
        job = client.submit_job("diabetes-mlp", "parquet", len(bad), output_format="parquet")
        client.upload(job["upload"], bad)
        failed = _wait(client, job["job_id"])
        assert failed["status"] == "failed" and "Parquet" in str(failed["error"]), failed


@pytest.mark.parametrize("body", [{"format": "csv", "bytes": 10, "output_format": "xlsx"},
                                  {"format": "parquet", "bytes": 10, "output_format": None}])
def test_a_bad_output_format_is_refused(base_url: str, body: dict[str, object]) -> None:
    with pytest.raises(ApiRejectedError) as refused:
        Client(base_url).call("POST", "/v1/models/diabetes-mlp/jobs", body)
    assert refused.value.status == 422 and "output_format must be one of jsonl, parquet" in str(refused.value)
