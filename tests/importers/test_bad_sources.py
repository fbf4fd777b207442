"""What ``maas import`` refuses: one line naming the problem, an exit code from the table, nothing published and
no version folder left behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from functions.core.errors import InvalidInputError, InvalidSourceError, exit_code
from tests.importers.conftest import Sources, assert_refused, export_mlp, run_cli

SOURCE = exit_code(InvalidSourceError("x"))
INPUT = exit_code(InvalidInputError("x"))


def _truncated(sources: Sources, tmp: Path) -> list[str | Path]:
    data = sources["iris.onnx"].read_bytes()
    (tmp / "cut.onnx").write_bytes(data[: len(data) // 2])
    return [tmp / "cut.onnx"]


def _garbage(sources: Sources, tmp: Path) -> list[str | Path]:
    (tmp / "junk.onnx").write_bytes(b"\x00\xffnot a model at all" * 10)
    return [tmp / "junk.onnx"]


def _foreign_domain(sources: Sources, tmp: Path) -> list[str | Path]:
    model = onnx.load(str(sources["iris.onnx"]))
    model.graph.node[0].domain = "com.example.custom"
    model.opset_import.append(helper.make_opsetid("com.example.custom", 1))
    onnx.save(model, str(tmp / "custom.onnx"))
    return [tmp / "custom.onnx"]


def _external_data(sources: Sources, tmp: Path) -> list[str | Path]:
    model = onnx.load(str(sources["mlp.onnx"]))
    onnx.save(model, str(tmp / "external.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="external.onnx.data", size_threshold=0)
    return [tmp / "external.onnx", "--task", "classification"]


def _rank3_input(sources: Sources, tmp: Path) -> list[str | Path]:
    graph = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, str(tmp / "cube.onnx"))
    return [tmp / "cube.onnx", "--task", "embedding"]


def _fixed_batch(sources: Sources, tmp: Path) -> list[str | Path]:
    export_mlp(tmp / "fixed.onnx", dynamic=False)
    return [tmp / "fixed.onnx", "--task", "classification"]


def _pickle(sources: Sources, tmp: Path) -> list[str | Path]:
    (tmp / "model.pkl").write_bytes(b"\x80\x04N.")
    return [tmp / "model.pkl"]


def _missing(sources: Sources, tmp: Path) -> list[str | Path]:
    return [tmp / "nowhere.onnx"]


def _plain_folder(sources: Sources, tmp: Path) -> list[str | Path]:
    (tmp / "folder").mkdir()
    return [tmp / "folder"]


def _label_count(sources: Sources, tmp: Path) -> list[str | Path]:
    return [sources["iris.onnx"], "--labels", "a,b", "--features", "a,b,c,d"]


def _no_task(sources: Sources, tmp: Path) -> list[str | Path]:
    return [sources["mlp.onnx"], "--features", ",".join(sources.cancer_features)]


def _no_features(sources: Sources, tmp: Path) -> list[str | Path]:
    return [sources["cancer.onnx"]]


def _sample_header(sources: Sources, tmp: Path) -> list[str | Path]:
    (tmp / "three.csv").write_text("a,b,c\n1,2,3\n")
    return [sources["iris.onnx"], "--sample", tmp / "three.csv"]


def _sample_columns(sources: Sources, tmp: Path) -> list[str | Path]:
    (tmp / "other.csv").write_text("a,b,c,e\n1,2,3,4\n")
    return [sources["iris.onnx"], "--features", "a,b,c,d", "--sample", tmp / "other.csv"]


def _sample_cells(sources: Sources, tmp: Path) -> list[str | Path]:
    (tmp / "words.csv").write_text("a,b,c,d\n1,2,3,4\n1,two,3,4\n")
    return [sources["iris.onnx"], "--sample", tmp / "words.csv"]


def _eval_classes(sources: Sources, tmp: Path) -> list[str | Path]:
    return [sources["iris.onnx"], "--labels", "x,y,z", "--sample", sources["iris.csv"], "--eval",
            sources["iris.csv"], "--target", "species"]


CASES: dict[str, tuple[Callable[[Sources, Path], list[str | Path]], int, str]] = {
    "truncated file": (_truncated, SOURCE, "truncated or corrupt"),
    "not onnx at all": (_garbage, SOURCE, "junk.onnx: "),
    "operator domain outside the allow-list": (_foreign_domain, SOURCE,
                                               "not allowed: 'com.example.custom' (allow-list: "),
    "external data": (_external_data, SOURCE, "save_as_external_data=False"),
    "input shape maas cannot serve": (_rank3_input, SOURCE, "a shape maas cannot serve"),
    "fixed batch size": (_fixed_batch, SOURCE, "dynamic batch axis"),
    "unsupported model type": (_pickle, SOURCE, "unsupported model type '.pkl'"),
    "no such file": (_missing, SOURCE, "no such file"),
    "folder without config.json": (_plain_folder, SOURCE, "without config.json"),
    "label count vs outputs": (_label_count, SOURCE, "--labels name 2 classes but output"),
    "task not inferable": (_no_task, SOURCE, "pass --task"),
    "features not named": (_no_features, SOURCE, "pass --features"),
    "sample header vs input width": (_sample_header, SOURCE, "names 3 features, the model's input takes 4"),
    "sample lacks a feature column": (_sample_columns, INPUT, "lacks feature column(s) ['d']"),
    "sample row not numeric": (_sample_cells, INPUT, "--sample words.csv line 3: non-numeric cell"),
    "eval target not a class": (_eval_classes, INPUT, "'setosa' is not one of the model's classes"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_source_is_one_line_and_publishes_nothing(case: str, sources: Sources, tmp_path: Path) -> None:
    make, code, words = CASES[case]
    store = tmp_path / "store"
    assert_refused(store, run_cli("import", *make(sources, tmp_path), "--name", "bad", "--quick",
                                  "--store", f"file://{store}"), code, words)

