"""The built-in tasks (detection, classification): contract, registration, results, evaluators, drawing."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from typing import Any

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from toolkit.contracts import Evaluator, Task, missing_members
from toolkit.data.drawing import PALETTE, caption, draw_boxes, font_size
from toolkit.errors import ToolkitError
from toolkit.plugins import PluginManager
from toolkit_plugins.tasks.classification_task import ClassificationTask
from toolkit_plugins.tasks.detection_metrics import coco_metrics, voc_map
from toolkit_plugins.tasks.detection_results import detections_to_coco
from toolkit_plugins.tasks.detection_task import DetectionTask

TASKS = [DetectionTask(), ClassificationTask()]


# ------------------------------------------------------------------------- contract, registration


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_tasks_satisfy_the_protocol(task: Any) -> None:
    assert missing_members(task, Task) == []
    assert isinstance(task, Task)
    assert task.best_metric == task.metric_names[0]
    assert task.lower_is_better == ()
    assert task.dataset_tasks == (task.name,)
    copy = pickle.loads(pickle.dumps(task))  # travels into DataLoader workers
    assert type(copy) is type(task) and dict(copy.output_names) == dict(task.output_names)


def test_tasks_are_registered_through_entry_points() -> None:
    registry = PluginManager().registry("task")
    assert {"detection", "classification"} <= set(registry.names())
    for name, plugin, klass in (
        ("detection", "toolkit.detection_task", DetectionTask),
        ("classification", "toolkit.classification_task", ClassificationTask),
    ):
        entry = registry.get(name)
        assert entry.plugin.name == plugin
        assert entry.plugin.source == "entry point"
        assert type(entry.build()) is klass


def test_registration_modules_import_no_torch() -> None:
    code = (
        "import sys\n"
        "import toolkit_plugins.tasks.detection, toolkit_plugins.tasks.classification\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------------- detection


def _decoded(boxes: list[list[list[float]]], scores: list[list[float]], labels: list[list[int]]) -> dict:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


# A 256x192 (WxH) image letterboxed into 128x128: scale 1/2, pad_left 0, pad_top 16.
LETTERBOX_META = {
    "image_id": 3,
    "orig_size": torch.tensor([192, 256]),
    "letterbox": torch.tensor([0.5, 0, 16]),
}


def test_detection_results_invert_the_letterbox_exactly() -> None:
    decoded = _decoded([[[10.0, 26.0, 50.0, 66.0]]], [[0.75]], [[1]])
    [result] = DetectionTask().results(decoded, [LETTERBOX_META], (128, 128), ["a", "b"])
    assert set(result) == {"boxes", "scores", "labels", "class_names"}
    assert result["boxes"].dtype == torch.float64 and result["boxes"].device.type == "cpu"
    assert result["boxes"].tolist() == [[20.0, 20.0, 100.0, 100.0]]
    assert result["scores"].dtype == torch.float64 and result["scores"].tolist() == [0.75]
    assert result["labels"].dtype == torch.int64 and result["labels"].tolist() == [1]
    assert result["class_names"] == ["b"]


def test_detection_results_drop_and_keep_decoder_order() -> None:
    boxes = [
        [10.0, 26.0, 50.0, 66.0],  # kept
        [10.0, 0.0, 50.0, 16.0],  # wholly in the top padding: zero height after clipping
        [30.0, 30.0, 30.0, 60.0],  # zero width
        [60.0, 40.0, 90.0, 80.0],  # negative label (padding)
        [60.0, 40.0, 90.0, 80.0],  # below the threshold
        [0.0, 16.0, 128.0, 112.0],  # kept: the whole image
    ]
    decoded = _decoded([boxes], [[0.9, 0.9, 0.9, 0.9, 0.05, 0.2]], [[0, 1, 1, -1, 1, 1]])
    [result] = DetectionTask().results(decoded, [LETTERBOX_META], (128, 128), ["a", "b"], score_threshold=0.1)
    assert result["boxes"].tolist() == [[20.0, 20.0, 100.0, 100.0], [0.0, 0.0, 256.0, 192.0]]
    assert result["scores"].tolist() == pytest.approx([0.9, 0.2])
    assert result["labels"].tolist() == [0, 1]
    assert result["class_names"] == ["a", "b"]
    empty = DetectionTask().results(decoded, [LETTERBOX_META], (128, 128), ["a", "b"], score_threshold=0.95)
    assert empty[0]["boxes"].shape == (0, 4) and empty[0]["class_names"] == []


def test_detection_target_handling() -> None:
    task = DetectionTask()
    boxes = tv_tensors.BoundingBoxes([[0, 0, 10, 10], [5, 5, 5.5, 20]], format="XYXY", canvas_size=(32, 32))
    target = {"boxes": boxes, "labels": torch.tensor([1, 0]), "image_id": 4}
    prepared = task.prepare_target(target)
    assert prepared == target and prepared is not target
    prepared["orig_size"] = torch.tensor([32, 32])
    assert "orig_size" not in target  # a copy
    [sanitize] = task.transforms_after()
    assert isinstance(sanitize, v2.SanitizeBoundingBoxes)
    _, cleaned = v2.Compose(task.transforms_after())(tv_tensors.Image(torch.zeros(3, 32, 32)), prepared)
    assert cleaned["labels"].tolist() == [1]  # the 0.5-pixel-wide box is gone
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    encoded = task.encode_target(cleaned, lambda b, labels: calls.append((b, labels)) or {"n": len(b)})
    assert encoded == {"n": 1}
    assert type(calls[0][0]) is torch.Tensor and calls[0][0].dtype == torch.float32
    assert calls[0][0].tolist() == [[0.0, 0.0, 10.0, 10.0]] and calls[0][1].tolist() == [1]


class GroundTruthDataset:
    """Two 256x192 images: image 1 with classes 0 and 1, image 2 with class 1."""

    OBJECTS = [
        (1, 0, [20.0, 20.0, 80.0, 80.0]),
        (1, 1, [120.0, 40.0, 60.0, 100.0]),
        (2, 1, [8, 10, 200, 150]),
    ]

    def ground_truth(self) -> dict[str, Any]:
        return {
            "images": [{"id": i, "width": 256, "height": 192} for i in (1, 2)],
            "annotations": [
                {
                    "id": k + 1,
                    "image_id": i,
                    "category_id": c,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
                for k, (i, c, box) in enumerate(self.OBJECTS)
            ],
            "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
        }


def _ground_truth_as_decoded(extra: list[float] | None = None) -> tuple[dict, list[dict]]:
    """The dataset's objects letterboxed into 128x128 input pixels (K = 2, label -1 pads)."""
    rows: dict[int, list[tuple[list[float], float, int]]] = {1: [], 2: []}
    for image_id, label, (x, y, w, h) in GroundTruthDataset.OBJECTS:
        box = [x * 0.5, y * 0.5 + 16, (x + w) * 0.5, (y + h) * 0.5 + 16]
        rows[image_id].append((box, 0.9 - 0.1 * len(rows[image_id]), label))
    rows[2].append((extra or [0.0, 0.0, 0.0, 0.0], 0.95 if extra else 0.5, 0 if extra else -1))
    decoded = _decoded(
        [[b for b, _, _ in rows[i]] for i in (1, 2)],
        [[s for _, s, _ in rows[i]] for i in (1, 2)],
        [[c for _, _, c in rows[i]] for i in (1, 2)],
    )
    meta = [{**LETTERBOX_META, "image_id": i} for i in (1, 2)]
    return decoded, meta


def test_detection_evaluator_perfect_predictions() -> None:
    task = DetectionTask()
    evaluator = task.evaluator(GroundTruthDataset(), ["a", "b"])
    assert missing_members(evaluator, Evaluator) == []
    decoded, meta = _ground_truth_as_decoded()
    for n in range(2):  # one image per batch
        results = task.results(
            {k: v[n : n + 1] for k, v in decoded.items()}, meta[n : n + 1], (128, 128), ["a", "b"]
        )
        evaluator.update(results, {}, meta[n : n + 1])
    metrics = evaluator.compute()
    assert set(task.metric_names) <= set(metrics)
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["AP50"] == metrics["AP75"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["VOC_mAP50"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["detections"] == 3


def test_detection_evaluator_equals_the_coco_path() -> None:
    # A false positive of class 0 on image 2, scored above every hit.
    decoded, meta = _ground_truth_as_decoded(extra=[60.0, 60.0, 100.0, 100.0])
    task = DetectionTask()
    evaluator = task.evaluator(GroundTruthDataset(), ["a", "b"])
    evaluator.update(task.results(decoded, meta, (128, 128), ["a", "b"]), {}, meta)
    metrics = evaluator.compute()
    truth = GroundTruthDataset().ground_truth()
    detections = detections_to_coco(decoded, meta, (128, 128))
    expected = {**coco_metrics(truth, detections), "VOC_mAP50": voc_map(truth, detections)["mAP50"]}
    expected["detections"] = len(detections)
    assert list(metrics)[: len(expected)] == list(expected)
    assert set(metrics) - set(expected) == {"per_class", "confusion_matrix"}
    for name, value in expected.items():  # exactly equal; NaN (no small objects) on both sides
        assert metrics[name] == value or (math.isnan(metrics[name]) and math.isnan(value)), name
    assert math.isnan(metrics["AP_small"])
    # class 0: the false positive (0.95) outranks the hit (0.9) -> AP 1/2; class 1 -> 1.
    assert metrics["VOC_mAP50"] == pytest.approx(0.75, abs=1e-12)


def test_detection_evaluator_needs_ground_truth() -> None:
    class NoTruth:
        pass

    with pytest.raises(ToolkitError, match="NoTruth"):
        DetectionTask().evaluator(NoTruth(), ["a"])


def test_detection_drawing() -> None:
    task = DetectionTask()
    image = torch.zeros(3, 96, 128, dtype=torch.uint8)
    result = {
        "boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]], dtype=torch.float64),
        "scores": torch.tensor([0.87], dtype=torch.float64),
        "labels": torch.tensor([1]),
        "class_names": ["b"],
    }
    drawn = task.draw(image, result, ["a", "b"])
    assert drawn.dtype == torch.uint8 and drawn.shape == image.shape
    assert (drawn != image).any() and not image.any()  # the input untouched
    empty = {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.int64),
    }
    assert torch.equal(task.draw(image, empty, ["a", "b"]), image)
    boxes = tv_tensors.BoundingBoxes([[5, 5, 40, 40]], format="XYXY", canvas_size=(96, 128))
    target = task.draw_target(image, {"boxes": boxes, "labels": torch.tensor([0])}, ["a", "b"])
    assert target.dtype == torch.uint8 and target.shape == image.shape and (target != image).any()


# ---------------------------------------------------------------------------- classification


def test_classification_target_handling() -> None:
    task = ClassificationTask()
    for raw in (2, torch.tensor(2), torch.tensor([2])):
        prepared = task.prepare_target(raw)
        assert (
            prepared["label"].dtype == torch.int64
            and prepared["label"].shape == ()
            and int(prepared["label"]) == 2
        )
    assert task.transforms_after() == []
    assert task.encode_target({"label": torch.tensor(1)}, lambda label: {"label": label + 10}) == {
        "label": torch.tensor(11)
    }


def test_classification_results() -> None:
    probs = torch.tensor([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])
    decoded = {"probs": probs}
    results = ClassificationTask().results(decoded, [{}, {}], (32, 32), ["a", "b", "c"], score_threshold=0.9)
    assert [(r["label"], r["class_name"]) for r in results] == [(1, "b"), (0, "a")]
    assert [r["score"] for r in results] == pytest.approx([0.7, 0.6])
    assert results[0]["probs"].dtype == torch.float32 and torch.equal(results[0]["probs"], probs[0])
    assert all(type(r["label"]) is int and type(r["score"]) is float for r in results)


def test_classification_evaluator(tmp_path: Any) -> None:
    # true 0 0 1 2, predicted 0 1 1 2 (two batches): accuracy 3/4.
    task = ClassificationTask()
    evaluator = task.evaluator(object(), ["a", "b", "c"])
    assert missing_members(evaluator, Evaluator) == []
    for truth, predicted in (([0, 0], [0, 1]), ([1, 2], [1, 2])):
        results = [{"label": p} for p in predicted]
        evaluator.update(results, {"label": torch.tensor(truth)}, [{}] * len(truth))
    metrics = evaluator.compute(tmp_path)
    assert set(task.metric_names) <= set(metrics)
    assert metrics["accuracy"] == pytest.approx(3 / 4)
    assert metrics["macro_recall"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="true labels"):
        evaluator.update([{"label": 0}], {"label": torch.tensor([0, 1])}, [{}, {}])


def test_classification_drawing() -> None:
    task = ClassificationTask()
    image = torch.full((3, 64, 80), 255, dtype=torch.uint8)
    result = {"probs": torch.tensor([0.2, 0.8]), "label": 1, "class_name": "b", "score": 0.8}
    for drawn in (
        task.draw(image, result, ["a", "b"]),
        task.draw_target(image, {"label": torch.tensor(0)}, ["a", "b"]),
    ):
        assert drawn.dtype == torch.uint8 and drawn.shape == image.shape
        assert (drawn != image).any()
        assert (drawn[:, :, 0] != 255).any()  # the frame's left edge


# ----------------------------------------------------------------------------------- drawing


def test_draw_boxes_and_caption() -> None:
    image = torch.zeros(3, 40, 50, dtype=torch.uint8)
    same = draw_boxes(image, torch.zeros(0, 4), [], [])
    assert torch.equal(same, image) and same is not image
    drawn = draw_boxes(image, torch.tensor([[2.0, 2.0, 20.0, 20.0]]), ["x"], [9])
    red = tuple(int(PALETTE[9 % len(PALETTE)][i : i + 2], 16) for i in (1, 3, 5))
    assert tuple(drawn[:, 2, 10].tolist()) == red  # the top edge in class 9's colour
    framed = caption(image, "label", 0)
    assert framed.shape == image.shape and (framed[:, -1, :] != 0).any()
    with pytest.raises(ValueError, match="differ"):
        draw_boxes(image, torch.zeros(1, 4), [], [])
    with pytest.raises(ValueError, match="uint8"):
        draw_boxes(image.float(), torch.zeros(0, 4), [], [])
    assert font_size(96, 128) == 10 and font_size(1024, 2048) == 40
    assert font_size(1024, 2048, box_height=300.0) == 40  # large boxes: the image decides
    assert font_size(10_000, 10_000, box_height=24.0) == 24  # small objects in a large image
    assert font_size(10_000, 10_000, box_height=4.0) == 10  # never under 10
