"""The serving cold path imports no web framework or validation library (issue 14)."""

from __future__ import annotations

import subprocess
import sys

import orjson

CORE = ("functions.core.settings", "functions.core.manifest", "functions.core.catalog", "functions.core.model_cache",
        "functions.core.store")
FORBIDDEN = ("pydantic", "pydantic_core", "fastapi", "starlette")


def test_core_modules_import_no_pydantic_fastapi_or_starlette() -> None:
    code = (f"import sys, json\nfor m in {CORE!r}: __import__(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    loaded = orjson.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout)
    assert set(CORE) <= set(loaded)
    offenders = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert offenders == []
