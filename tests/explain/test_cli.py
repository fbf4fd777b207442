"""``maas explain`` against the live server: a ranked bar chart per instance, API errors as exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from functions.core.errors import ApiRejectedError, ApiUnreachableError, exit_code
from maas.cli import main
from tests.api.samples import DIABETES_ROW, DIGIT_ZERO


def test_prints_features_ranked_by_attribution(explain_url: str) -> None:
    result = CliRunner().invoke(main, ["explain", "diabetes-mlp", "--data", json.dumps([DIABETES_ROW]),
                                       "--url", explain_url])
    assert result.exit_code == 0, result.output
    assert "instance 0: value" in result.output and "exact" in result.output
    bars = re.findall(r"^\s+(\w+)\s+█+ ([+-][\d.e+-]+)$", result.output, flags=re.MULTILINE)
    assert {name for name, _ in bars} == set(DIABETES_ROW)
    magnitudes = [abs(float(value)) for _, value in bars]
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_text_from_a_file_and_pixels(explain_url: str, tmp_path: Path) -> None:
    data = tmp_path / "texts.json"
    data.write_text(json.dumps({"instances": ["Snow and wind tonight."]}))
    result = CliRunner().invoke(main, ["explain", "text-lstm", "--data", f"@{data}", "--url", explain_url,
                                       "--top", "3"])
    assert result.exit_code == 0, result.output
    assert len(re.findall(r"^\s+'[^']+' @\d+ ", result.output, flags=re.MULTILINE)) == 3
    assert "... 2 more" in result.output  # 5 tokens, 3 shown
    result = CliRunner().invoke(main, ["explain", "digits-cnn", "--data", json.dumps([DIGIT_ZERO]),
                                       "--url", explain_url, "--version", "1"])
    assert result.exit_code == 0 and "pixel r" in result.output


def test_api_errors_become_exit_codes(explain_url: str) -> None:
    result = CliRunner().invoke(main, ["explain", "text-lstm", "--data", '[""]', "--url", explain_url])
    assert result.exit_code == exit_code(ApiRejectedError(422, "")) and "empty text" in result.output
    result = CliRunner().invoke(main, ["explain", "text-lstm", "--data", '["x"]', "--url", "http://127.0.0.1:9"])
    assert result.exit_code == exit_code(ApiUnreachableError(""))
