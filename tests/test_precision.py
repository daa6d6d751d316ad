"""fp16 and int8 copies of exported files (toolkit.export.precision): valid files, metadata, float32 IO,
fp16 within its documented tolerances of fp32, int8 outputs valid and tracking fp32.

Small random-init models (a CenterNet-ResNet18 at 64x64 with a thin neck, the ResNet-18 classifier):
their scores are nearly tied, so detections are compared order-free (scores sorted per image, boxes
matched by label and position) and int8 by correlation across images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from toolkit.build import build_model
from toolkit.errors import ToolkitError
from toolkit.export.metadata import read_file_info
from toolkit.export.onnx_export import export_onnx
from toolkit.export.precision import (
    FP16_BOX_TOLERANCE_FRACTION,
    FP16_SCORE_TOLERANCE,
    HEAVY_OPS,
    PRECISION_KEY,
    convert_fp16,
    float_tail,
    quantize_int8,
    sort_topologically,
)
from toolkit.inference import preprocess
from toolkit.spec import load_spec
from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

REPO = Path(__file__).resolve().parents[1]
SIZE = 64
CONFIGS = {
    "detection": (
        "configs/centernet_resnet18_shapes.yaml",
        [f"model.input_size={SIZE}", "model.head.neck_channels=[16, 16, 16]", "model.head.head_conv=8"],
    ),
    "classification": ("configs/classifier_resnet18_shapes.yaml", [f"model.input_size={SIZE}"]),
}
PRECISIONS = ("fp16", "int8")
# int8 floors, measured on 10 random inits (seeds 0-9) of both models, 16 images: classifier probs
# correlation 0.987-0.998 and argmax agreement 1.0; CenterNet per-image top score correlation
# 0.975-0.999 (top scores spread over 3e-4..2e-3, int8 off by at most 1e-4)
INT8_PROBS_CORRELATION = 0.95
INT8_ARGMAX_AGREEMENT = 0.8
INT8_TOP_SCORE_CORRELATION = 0.9


def shapes_batch(start: int, count: int) -> np.ndarray:
    """`count` letterboxed shapes images (rendered at 80 px, so the letterbox scales them) [N,3,64,64]."""
    dataset = ShapesDataset(length=start + count, image_size=80, seed=7)
    batch, _ = preprocess([dataset[i][0] for i in range(start, start + count)], (SIZE, SIZE))
    return batch.numpy()


def run(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"images": images}), strict=True))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return shapes_batch(0, 16)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Both models exported fp32, converted to fp16 and quantized to int8 (calibrated on 16 other images)."""
    calibration = shapes_batch(16, 16)
    out = tmp_path_factory.mktemp("precision")
    found: dict[str, dict[str, Path]] = {}
    for kind, (config, overrides) in CONFIGS.items():
        torch.manual_seed(0)
        spec = load_spec(REPO / config, overrides)
        model = build_model(spec)
        fp32 = export_onnx(model, out / f"{kind}.onnx", spec=spec.model_dump(mode="json")).path
        found[kind] = {
            "fp32": fp32,
            "fp16": convert_fp16(fp32, out / f"{kind}_fp16.onnx"),
            "int8": quantize_int8(
                fp32, out / f"{kind}_int8.onnx", [calibration[i : i + 4] for i in (0, 4, 8, 12)]
            ),
        }
    return found


@pytest.fixture(scope="module")
def outputs(
    files: dict[str, dict[str, Path]], images: np.ndarray
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    return {kind: {p: run(path, images) for p, path in paths.items()} for kind, paths in files.items()}


def elem_types(model: Any) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}


# -- files -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_file_is_valid_with_metadata_and_float32_io(files, kind: str, precision: str) -> None:
    path, reference = files[kind][precision], files[kind]["fp32"]
    onnx.checker.check_model(str(path), full_check=True)
    model, original = onnx.load(str(path)), onnx.load(str(reference))
    assert elem_types(model) == elem_types(original)
    assert elem_types(model)["images"] == onnx.TensorProto.FLOAT
    info, fp32_info = read_file_info(path), read_file_info(reference)
    assert fp32_info.precision == "fp32"
    assert info.precision == precision
    metadata = {p.key: p.value for p in model.metadata_props}
    original_metadata = {p.key: p.value for p in original.metadata_props}
    assert metadata == {**original_metadata, PRECISION_KEY: precision}


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_reduced_files_are_smaller(files, kind: str) -> None:
    size = {p: path.stat().st_size for p, path in files[kind].items()}
    assert size["fp16"] < 0.6 * size["fp32"]
    assert size["int8"] < 0.35 * size["fp32"]


def test_float_tail_stays_float32(files) -> None:
    """fp16: every input of the decode and output layers is float32 (no float16 rounding in between);
    int8: the output layers keep float weights (no DequantizeLinear feeds them)."""
    for kind, paths in files.items():
        tail = set(float_tail(onnx.load(str(paths["fp32"])).graph))
        assert any(name for name in tail), kind
        fp16 = onnx.shape_inference.infer_shapes(onnx.load(str(paths["fp16"])))
        types = {v.name: v.type.tensor_type.elem_type for v in [*fp16.graph.value_info, *fp16.graph.input]}
        types |= {t.name: t.data_type for t in fp16.graph.initializer}
        checked = [n for n in fp16.graph.node if n.name in tail]
        assert len(checked) == len(tail), kind
        half = [(n.name, i) for n in checked for i in n.input if types.get(i) == onnx.TensorProto.FLOAT16]
        assert not half, f"{kind}: float16 inputs in the float32 tail: {half}"
        int8 = onnx.load(str(paths["int8"]))
        producer = {name: node.op_type for node in int8.graph.node for name in node.output}
        heavy = [n for n in int8.graph.node if n.name in tail and n.op_type in HEAVY_OPS]
        assert heavy, kind
        assert all(producer.get(n.input[1]) != "DequantizeLinear" for n in heavy), kind
        assert any(n.op_type == "DequantizeLinear" for n in int8.graph.node), kind


# -- fp16 ------------------------------------------------------------------------------------------
def matched_detections(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """For each real detection of `a` (score > 0), the nearest box of `b` with the same label: the
    distance (max over xyxy, px) and the score difference. Near-tied random-init scores reorder the
    detections, a near-flat heatmap can gain or lose a local maximum, and detections at the top-K edge
    swap, so the pairing goes by label and position rather than by rank."""
    distances, score_differences = [], []
    for image in range(len(a["scores"])):
        real_b = b["scores"][image] > 0
        for j in np.flatnonzero(a["scores"][image] > 0):
            same = real_b & (b["labels"][image] == a["labels"][image, j])
            if not same.any():
                distances.append(np.inf)
                score_differences.append(np.inf)
                continue
            distance = np.abs(b["boxes"][image][same] - a["boxes"][image, j]).max(axis=1)
            nearest = int(distance.argmin())
            distances.append(distance[nearest])
            score_differences.append(abs(b["scores"][image][same][nearest] - a["scores"][image, j]))
    return np.asarray(distances), np.asarray(score_differences)


def test_fp16_detection_within_tolerance(outputs) -> None:
    fp32, fp16 = outputs["detection"]["fp32"], outputs["detection"]["fp16"]
    # the top score (the heatmap's maximum) is robust to reordering
    assert np.abs(fp32["scores"][:, 0] - fp16["scores"][:, 0]).max() <= FP16_SCORE_TOLERANCE
    assert np.abs((fp32["scores"] > 0).sum(1) - (fp16["scores"] > 0).sum(1)).max() <= 2
    distances, score_differences = matched_detections(fp32, fp16)
    close = distances <= FP16_BOX_TOLERANCE_FRACTION * SIZE
    # all but the few detections swapped at the top-K edge are found again, with their score
    assert close.mean() >= 0.95
    assert score_differences[close].max() <= FP16_SCORE_TOLERANCE


def test_fp16_classifier_within_tolerance(outputs) -> None:
    fp32, fp16 = outputs["classification"]["fp32"], outputs["classification"]["fp16"]
    assert np.abs(fp32["probs"] - fp16["probs"]).max() <= FP16_SCORE_TOLERANCE
    clear = np.abs(fp32["probs"][:, 1] - fp32["probs"][:, 0]) > 2 * FP16_SCORE_TOLERANCE
    assert (fp32["probs"].argmax(1) == fp16["probs"].argmax(1))[clear].all()


# -- int8 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_int8_outputs_are_valid(outputs, kind: str) -> None:
    fp32, int8 = outputs[kind]["fp32"], outputs[kind]["int8"]
    assert set(int8) == set(fp32)
    for name, value in int8.items():
        assert value.shape == fp32[name].shape and value.dtype == fp32[name].dtype, name
        assert np.isfinite(value).all(), name
    if kind == "detection":
        scores, boxes, labels = int8["scores"], int8["boxes"], int8["labels"]
        assert ((scores >= 0) & (scores <= 1)).all()
        assert (np.diff(scores, axis=1) <= 0).all()
        assert ((labels >= 0) & (labels < 3)).all()
        assert ((boxes >= 0) & (boxes <= SIZE)).all()
        assert (boxes[..., 2:] >= boxes[..., :2]).all()
    else:
        np.testing.assert_allclose(int8["probs"].sum(1), 1.0, atol=1e-5)


def test_int8_tracks_fp32(outputs) -> None:
    fp32, int8 = outputs["classification"]["fp32"], outputs["classification"]["int8"]
    assert np.corrcoef(fp32["probs"][:, 1], int8["probs"][:, 1])[0, 1] >= INT8_PROBS_CORRELATION
    assert np.mean(fp32["probs"].argmax(1) == int8["probs"].argmax(1)) >= INT8_ARGMAX_AGREEMENT
    fp32, int8 = outputs["detection"]["fp32"], outputs["detection"]["int8"]
    top32, top8 = fp32["scores"][:, 0], int8["scores"][:, 0]
    assert np.corrcoef(top32, top8)[0, 1] >= INT8_TOP_SCORE_CORRELATION


# -- errors and helpers ----------------------------------------------------------------------------
def test_int8_rejects_bad_calibration(files, tmp_path: Path) -> None:
    source = files["classification"]["fp32"]
    with pytest.raises(ToolkitError, match="no batches"):
        quantize_int8(source, tmp_path / "x.onnx", [])
    with pytest.raises(ToolkitError, match=r"\[N,3,H,W\]"):
        quantize_int8(source, tmp_path / "x.onnx", [np.zeros((3, SIZE, SIZE), np.float32)])
    with pytest.raises(ToolkitError, match="not found"):
        convert_fp16(tmp_path / "missing.onnx", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_sort_topologically() -> None:
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Relu", ["b"], ["c"], name="second"),
        helper.make_node("Neg", ["a"], ["b"], name="first"),
        helper.make_node("Add", ["b", "c"], ["d"], name="third"),
    ]
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes, "g", [value("a", TensorProto.FLOAT, [2])], [value("d", TensorProto.FLOAT, [2])]
    )
    sort_topologically(graph)
    assert [n.name for n in graph.node] == ["first", "second", "third"]
    onnx.checker.check_model(helper.make_model(graph), full_check=True)
    cycle = helper.make_graph(
        [helper.make_node("Neg", ["y"], ["x"]), helper.make_node("Neg", ["x"], ["y"])],
        "cycle",
        [],
        [value("y", TensorProto.FLOAT, [2])],
    )
    with pytest.raises(ToolkitError, match="cycle"):
        sort_topologically(cycle)
