"""onnxruntime (`toolkit.export.runtime`): provider choice, and `OnnxModel.predict` giving the torch
model's results (same pre- and post-processing, the graph in place of the module); `toolkit env`'s
report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
from conftest import REPO

from toolkit.build import Builder, build_model
from toolkit.env_report import environment_lines
from toolkit.errors import ToolkitError
from toolkit.export.metadata import write_metadata
from toolkit.export.onnx_export import export_onnx
from toolkit.export.runtime import CPU, CUDA, PROVIDER_ORDER, TENSORRT, OnnxModel, choose_providers
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

DETECTOR = (
    "configs/centernet_resnet18_shapes.yaml",
    ["model.input_size=64", "model.head.neck_channels=[16, 16, 16]", "model.head.head_conv=8"],
)
CLASSIFIER = ("configs/classifier_resnet18_shapes.yaml", ["model.input_size=64"])
CATEGORY_IDS = [11, 22, 33]  # the detector's 3 classes as a dataset's original ids


def small_model(config: tuple[str, list[str]], manager: PluginManager) -> tuple[Any, Any]:
    torch.manual_seed(0)
    spec = load_spec(REPO / config[0], config[1], plugins=manager)
    model = build_model(spec, plugins=manager).eval()
    heatmap = getattr(model.head, "heatmap", None)
    if heatmap is not None:  # spread the untrained detector's scores (all near 0.1) apart
        with torch.no_grad():
            heatmap[-1].weight.mul_(30.0)
    return model, spec


def sample_images() -> list[torch.Tensor]:
    """Differently sized uint8 images (wider, taller, square, larger than the input)."""
    generator = torch.Generator().manual_seed(3)
    sizes = [(50, 70), (90, 40), (64, 64), (120, 200)]
    return [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator) for h, w in sizes]


def assert_same_detections(
    first: Mapping[str, Any], second: Mapping[str, Any], *, box_tol: float = 1e-3, score_tol: float = 1e-4
) -> None:
    """The same detections as sets: equal labels, boxes within `box_tol` px, scores within `score_tol`
    (near-tied scores may come out of TopK in another order)."""
    boxes = [torch.as_tensor(r["boxes"], dtype=torch.float64).reshape(-1, 4) for r in (first, second)]
    scores = [torch.as_tensor(r["scores"], dtype=torch.float64).reshape(-1) for r in (first, second)]
    labels = [torch.as_tensor(r["labels"], dtype=torch.int64).reshape(-1) for r in (first, second)]
    assert len(scores[0]) == len(scores[1]), f"{len(scores[0])} detections against {len(scores[1])}"
    unmatched = list(range(len(scores[1])))
    for i in range(len(scores[0])):
        match = next(
            (
                j
                for j in unmatched
                if labels[0][i] == labels[1][j]
                and float((boxes[0][i] - boxes[1][j]).abs().max()) <= box_tol
                and abs(float(scores[0][i] - scores[1][j])) <= score_tol
            ),
            None,
        )
        assert match is not None, (
            f"detection {i} (label {int(labels[0][i])}, score {float(scores[0][i]):.6f}, box "
            f"{boxes[0][i].tolist()}) has no counterpart"
        )
        unmatched.remove(match)


def threshold_between(results: Sequence[Mapping[str, Any]]) -> float:
    """A score threshold in the widest gap between the middle scores (no score lies near it)."""
    scores = sorted(float(s) for r in results for s in torch.as_tensor(r["scores"]).reshape(-1).tolist())
    middle = range(len(scores) // 4, 3 * len(scores) // 4)
    widest = max(middle, key=lambda i: scores[i + 1] - scores[i])
    return (scores[widest] + scores[widest + 1]) / 2


def assert_same_detection_lists(first: Sequence[Mapping], second: Sequence[Mapping]) -> None:
    assert len(first) == len(second)
    for one, other in zip(first, second, strict=True):
        assert_same_detections(one, other)


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


@pytest.fixture(scope="module")
def detector(manager: PluginManager, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    model, spec = small_model(DETECTOR, manager)
    path = tmp_path_factory.mktemp("onnx") / "detector.onnx"
    export_onnx(model, path, spec=spec.model_dump(mode="json"), category_ids=CATEGORY_IDS)
    return model, path


@pytest.fixture(scope="module")
def classifier(manager: PluginManager, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    model, spec = small_model(CLASSIFIER, manager)
    path = tmp_path_factory.mktemp("onnx") / "classifier.onnx"
    export_onnx(model, path, spec=spec.model_dump(mode="json"))
    return model, path


# -- providers ----------------------------------------------------------------------------------
def test_providers_on_a_cpu_only_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["AzureExecutionProvider", CPU])
    assert choose_providers() == [CPU]
    assert choose_providers("auto") == choose_providers("cpu") == [CPU]
    for asked in ("cuda", "tensorrt"):
        with pytest.raises(ToolkitError, match=asked) as error:
            choose_providers(asked)
        message = str(error.value)
        assert "AzureExecutionProvider, CPUExecutionProvider" in message
        assert 'pip install -e ".[gpu]"' in message and "toolkit env" in message
    with pytest.raises(ToolkitError, match="must be one of auto, tensorrt, cuda, cpu"):
        choose_providers("rocm")


def test_providers_come_in_order_with_tensorrt_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU, CUDA, TENSORRT])
    providers = choose_providers(trt_cache=tmp_path / "trt")
    assert [p[0] if isinstance(p, tuple) else p for p in providers] == list(PROVIDER_ORDER)
    name, options = providers[0]
    assert name == TENSORRT and options["trt_fp16_enable"] is True
    assert options["trt_engine_cache_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path / "trt") and (tmp_path / "trt").is_dir()
    assert choose_providers("cuda") == [CUDA, CPU]
    assert choose_providers("cpu") == [CPU]


def test_a_cpu_session_runs_on_the_cpu(detector: tuple[Any, Path], manager: PluginManager) -> None:
    _, path = detector
    model = OnnxModel(path, builder=Builder(manager), provider="cpu", threads=2)
    assert model.providers == [CPU]
    assert model.task.name == "detection" and model.class_names == ["circle", "square", "triangle"]
    assert model.input_size == (64, 64) and model.category_ids == CATEGORY_IDS
    import onnxruntime

    if CUDA not in onnxruntime.get_available_providers():
        with pytest.raises(ToolkitError, match=r"'cuda'.*not available.*\.\[gpu\]"):
            OnnxModel(path, builder=Builder(manager), provider="cuda")


def test_onnxruntime_values_become_torch_tensors() -> None:
    import numpy as np
    import onnxruntime

    from toolkit.export.runtime import _to_torch

    value = onnxruntime.OrtValue.ortvalue_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    tensor = _to_torch(value, torch.device("cpu"))
    assert torch.equal(tensor, torch.arange(6, dtype=torch.float32).reshape(2, 3))


# -- predict ------------------------------------------------------------------------------------
def test_onnx_detections_equal_the_torch_model(detector: tuple[Any, Path], manager: PluginManager) -> None:
    torch_model, path = detector
    model = OnnxModel(path, builder=Builder(manager), provider="cpu")
    expected = torch_model.predict(sample_images())
    got = model.predict(sample_images(), batch_size=3)  # two chunks
    assert sum(len(r["scores"]) for r in got) > 0
    assert_same_detection_lists(expected, got)
    for result in got:
        assert result["class_names"] == [model.class_names[label] for label in result["labels"].tolist()]
    threshold = threshold_between(expected)
    thresholded = model.predict(sample_images(), score_threshold=threshold)
    assert 0 < sum(len(r["scores"]) for r in thresholded) < sum(len(r["scores"]) for r in got)
    assert_same_detection_lists(torch_model.predict(sample_images(), score_threshold=threshold), thresholded)
    assert all(bool((r["scores"] >= threshold).all()) for r in thresholded)


def test_run_gives_the_outputs_by_name(detector: tuple[Any, Path], manager: PluginManager) -> None:
    torch_model, path = detector
    model = OnnxModel(path, builder=Builder(manager), provider="cpu")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    outputs = model.run(images)
    assert list(outputs) == ["boxes", "scores", "labels"]
    assert outputs["boxes"].shape == (2, 50, 4) and outputs["labels"].dtype == torch.int64
    with torch.no_grad():
        reference = torch_model.decode(torch_model(images))
    torch.testing.assert_close(outputs["scores"], reference["scores"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ToolkitError, match=r"\[N,3,H,W\]"):
        model.run(images[0])


def test_onnx_classification_equals_the_torch_model(
    classifier: tuple[Any, Path], manager: PluginManager
) -> None:
    torch_model, path = classifier
    model = OnnxModel(path, builder=Builder(manager), provider="cpu")
    assert model.task.name == "classification" and model.category_ids is None
    expected = torch_model.predict(sample_images())
    got = model.predict(sample_images())
    assert len(got) == len(expected) == 4
    for one, other in zip(expected, got, strict=True):
        torch.testing.assert_close(other["probs"], one["probs"], rtol=1e-4, atol=1e-5)
        assert other["label"] == one["label"] and other["class_name"] == one["class_name"]
        assert other["score"] == pytest.approx(one["score"], abs=1e-5)


def test_a_file_without_decoding_refuses_to_predict(
    detector: tuple[Any, Path], manager: PluginManager, tmp_path: Path
) -> None:
    _, path = detector
    proto = onnx.load(str(path))
    write_metadata(proto, {"toolkit.decoded": "false"})
    raw = tmp_path / "raw.onnx"
    onnx.save(proto, str(raw))
    model = OnnxModel(raw, builder=Builder(manager), provider="cpu")
    with pytest.raises(
        ToolkitError, match="exported with --no-decode: raw head outputs; export with decoding"
    ):
        model.predict(sample_images())


def test_a_file_without_toolkit_metadata_is_refused(manager: PluginManager, tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ToolkitError, match="no toolkit metadata"):
        OnnxModel(path, builder=Builder(manager))


# -- toolkit env --------------------------------------------------------------------------------
def test_environment_lines_name_torch_onnxruntime_and_the_providers() -> None:
    import onnxruntime

    lines = environment_lines()
    text = "\n".join(lines)
    assert any(line.startswith("python: ") for line in lines)
    assert f"torch: {torch.__version__}" in text and "cuda available: " in text
    assert f"onnxruntime: {onnxruntime.__version__}" in text
    assert any(line.startswith("providers: ") and CPU in line for line in lines)


def test_environment_lines_warn_about_both_onnxruntime_distributions(monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit import env_report

    monkeypatch.setattr(env_report, "installed_version", lambda name: "1.20.0")
    text = "\n".join(environment_lines())
    assert "WARNING: both onnxruntime and onnxruntime-gpu are installed" in text
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in text
