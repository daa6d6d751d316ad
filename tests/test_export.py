"""ONNX export: decoding in the graph, verified against torch (fp32 <= 1e-4), self-describing files,
refused combinations, a tampered file caught, a third-party backbone with no export code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, run_cli

from toolkit.build import build_model
from toolkit.export.graph import output_names
from toolkit.export.metadata import read_file_info
from toolkit.export.onnx_export import export_onnx
from toolkit.export.verify import verify_export
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

SMALL_CENTERNET = ["model.input_size=64", "model.head.neck_channels=[16, 16, 16]", "model.head.head_conv=8"]
MODELS = {
    "centernet-skips": ("configs/centernet_resnet18_shapes.yaml", SMALL_CENTERNET),
    "centernet-paper-neck": (
        "configs/centernet_resnet18_shapes.yaml",
        [*SMALL_CENTERNET, "model.head.skips=false"],
    ),
    "classifier": ("configs/classifier_resnet18_shapes.yaml", ["model.input_size=64"]),
}


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


def samples(count: int = 3) -> list[torch.Tensor]:
    from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

    dataset = ShapesDataset(length=count, image_size=80, seed=5)
    return [dataset[i][0] for i in range(count)]


def built(manager: PluginManager, name: str):  # type: ignore[no-untyped-def]
    config, overrides = MODELS[name]
    spec = load_spec(REPO / config, overrides, plugins=manager)
    torch.manual_seed(0)
    return spec, build_model(spec, plugins=manager).eval()


@pytest.mark.parametrize(
    ("name", "dynamic"),
    [(name, "batch,hw") for name in MODELS] + [("centernet-skips", "batch")],  # dynamic H, W: batch too
)
def test_export_verifies_at_batch_1_and_3(
    manager: PluginManager, tmp_path: Path, name: str, dynamic: str
) -> None:
    spec, model = built(manager, name)
    result = export_onnx(model, tmp_path / "model.onnx", spec=spec.model_dump(mode="json"), dynamic=dynamic)
    assert not (tmp_path / "model.onnx.data").exists(), "one self-contained file"
    check = verify_export(
        model,
        result.path,
        names=result.outputs,
        decode=True,
        dynamic_hw=dynamic == "batch,hw",
        samples=samples(),
    )
    assert check.passed, check.table()
    shapes = {c.shape[0] for c in check.checks}
    assert shapes >= {1, 3}
    sizes = {c.shape[-2:] for c in check.checks}
    assert len(sizes) == (2 if dynamic == "batch,hw" else 1)
    expected = ["boxes", "scores", "labels"] if model.task.name == "detection" else ["logits", "probs"]
    assert result.outputs == expected
    info = read_file_info(result.path)
    assert (info.task, info.class_names, info.input_size) == (model.task.name, model.class_names, (64, 64))
    assert info.input_multiple == 32 and info.dynamic == dynamic and info.decoded and info.precision == "fp32"
    assert info.spec["model"]["input_size"] == [64, 64]


def test_raw_outputs_without_decoding(manager: PluginManager, tmp_path: Path) -> None:
    spec, model = built(manager, "centernet-skips")
    result = export_onnx(model, tmp_path / "raw.onnx", spec=spec.model_dump(mode="json"), decode=False)
    assert result.outputs == output_names(model, decode=False) == ["heatmap", "offset", "size"]
    check = verify_export(model, result.path, names=result.outputs, decode=False, dynamic_hw=False)
    assert check.passed, check.table()
    assert not read_file_info(result.path).decoded


def test_a_tampered_file_fails_verification(manager: PluginManager, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    spec, model = built(manager, "classifier")
    result = export_onnx(model, tmp_path / "model.onnx", spec=spec.model_dump(mode="json"))
    proto = onnx.load(str(result.path))
    weight = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))  # the largest conv weight
    values = numpy_helper.to_array(weight) * 1.01
    weight.CopyFrom(numpy_helper.from_array(values.astype(np.float32), weight.name))
    onnx.save(proto, str(result.path))
    check = verify_export(model, result.path, names=result.outputs, decode=True, dynamic_hw=False)
    assert not check.passed
    assert any(c.differences["logits"] > 1e-4 for c in check.checks), check.table()


def test_the_example_backbone_plugin_exports_without_export_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "examples" / "toolkit-mobilenet"))
    manager = PluginManager(modules=["toolkit_mobilenet"])
    spec = load_spec(
        REPO / "examples/toolkit-mobilenet/configs/centernet_mobilenet.yaml",
        ["model.input_size=64", "model.head.neck_channels=[16, 16, 16]", "model.head.head_conv=8"],
        plugins=manager,
    )
    model = build_model(spec, plugins=manager).eval()
    result = export_onnx(
        model, tmp_path / "mobilenet.onnx", spec=spec.model_dump(mode="json"), dynamic="batch,hw"
    )
    check = verify_export(
        model, result.path, names=result.outputs, decode=True, dynamic_hw=True, samples=samples()
    )
    assert check.passed, check.table()


SPEC = "configs/centernet_resnet18_shapes.yaml"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--fp16", "--int8"], "exclude each other"),
        (["--int8", "--no-decode"], "needs decoding"),
        (["--opset", "11"], "greater than or equal to 18"),
        (["-o", "{tmp}"], "is a folder"),
        (["-o", "{tmp}/model.txt"], "should end in .onnx"),
        (["--int8", "data=null"], "has no data section"),
    ],
)
def test_impossible_combinations_are_refused_before_any_work(
    tmp_path: Path, options: list[str], message: str
) -> None:
    args = [option.replace("{tmp}", str(tmp_path)) for option in options]
    result = run_cli("export", SPEC, *SMALL_CENTERNET, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "exported" not in result.stdout
    assert not list(tmp_path.glob("*.onnx"))


def test_export_from_a_checkpoint_through_the_cli(tmp_path: Path, manager: PluginManager) -> None:
    spec, model = built(manager, "classifier")
    checkpoint = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "spec": spec.model_dump(mode="json")}, checkpoint)
    result = run_cli("export", str(checkpoint), "data.val.length=4", "--dynamic", "batch,hw")
    assert result.returncode == 0, result.stderr
    assert "fp32 against torch" in result.stdout and "MISMATCH" not in result.stdout
    assert "real images" in result.stdout and "other size" in result.stdout
    info = read_file_info(tmp_path / "best.onnx")
    assert info.task == "classification" and info.class_names == ["absent", "present"]
    assert json.dumps(info.spec["data"]["val"]["length"]) == "4"


def test_a_coco_models_original_category_ids_reach_the_file_and_its_results(
    tmp_path: Path, manager: PluginManager
) -> None:
    """COCO ids 3, 7, 11 (not contiguous): the export records them, `toolkit predict` writes them."""
    from toolkit.data.writers import write_coco
    from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

    root = write_coco(ShapesDataset(length=3, image_size=64, seed=2), tmp_path / "coco")
    annotations = root / "annotations" / "instances.json"
    document = json.loads(annotations.read_text())
    new_id = {0: 3, 1: 7, 2: 11}
    for category in document["categories"]:
        category["id"] = new_id[category["id"]]
    for annotation in document["annotations"]:
        annotation["category_id"] = new_id[annotation["category_id"]]
    annotations.write_text(json.dumps(document))
    coco = f"{{type: coco, images: {root / 'images'}, annotations: {annotations}}}"
    spec, model = built(manager, "centernet-skips")
    checkpoint = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "spec": spec.model_dump(mode="json")}, checkpoint)
    exported = run_cli("export", SPEC, *SMALL_CENTERNET, f"data.val={coco}", "--checkpoint", str(checkpoint))
    assert exported.returncode == 0, exported.stderr
    assert read_file_info(tmp_path / "best.onnx").category_ids == [3, 7, 11]
    out = tmp_path / "predictions"
    predicted = run_cli(
        "predict", str(tmp_path / "best.onnx"), str(root / "images"), "--out", str(out), "--threshold", "0"
    )
    assert predicted.returncode == 0, predicted.stderr
    results = json.loads((out / "results_coco.json").read_text())
    assert results and {r["category_id"] for r in results} <= {3, 7, 11}
