"""Handlers run by Lambda's real runtime client (awslambdaric) against a loopback Runtime API (tests/runtime_api.py).

The stores and the moto data bucket (S3 -> SQS notifications) are the monitoring and batch tests' own fixtures.
awslambdaric is a dev dependency on Linux only (manylinux wheels): elsewhere these tests are skipped.
"""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("awslambdaric", reason="Lambda's runtime client installs on Linux only (pyproject.toml, dev)")

from functions.core.store import LocalStore
from tests.batch.conftest import data_bucket  # noqa: F401  (fixtures shared with those tests)
from tests.monitoring.conftest import monitor_store  # noqa: F401


@pytest.fixture(scope="module")
def store_copy(monitor_store: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> LocalStore:  # noqa: F811
    """A copy of the demo store the module's handlers may write to (cancer-mlp has versions 1 and 2, prod on 1)."""
    root = tmp_path_factory.mktemp("runtime") / "store"
    shutil.copytree(monitor_store.root, root)
    return LocalStore(root)
