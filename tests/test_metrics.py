"""Evaluation functions: COCO metrics (real pycocotools), VOC mAP, prediction mapping, classification."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torchvision import tv_tensors

from toolkit.data.letterbox import Letterbox
from toolkit_plugins.tasks.classification_metrics import (
    classification_metrics,
    confusion_matrix_figure,
    plot_confusion_matrix,
)
from toolkit_plugins.tasks.detection_metrics import COCO_METRIC_NAMES, coco_metrics, voc_map
from toolkit_plugins.tasks.detection_results import detections_to_coco

# (image_id, label, [x, y, w, h]) on 400x300 images; every width divisible by 4 (see _shifted).
OBJECTS = [
    (1, 0, [10, 10, 20, 20]),  # small (area 400)
    (1, 1, [50, 50, 60, 60]),  # medium (3600)
    (1, 2, [150, 20, 200, 100]),  # large (20000)
    (2, 0, [20, 30, 60, 60]),  # medium
    (2, 0, [100, 100, 200, 120]),  # large
    (3, 1, [5, 5, 20, 20]),  # small
    (3, 2, [40, 40, 24, 24]),  # small (576)
]  # image 4 has no objects


def make_gt(objects: list[tuple[Any, ...]], images: int = 4, classes: int = 3) -> dict[str, Any]:
    """COCO ground truth; an object tuple may end with a dict of flags (iscrowd / ignore)."""
    annotations = []
    for index, (image_id, label, box, *flags) in enumerate(objects):
        extra = {"iscrowd": 0, "ignore": 0, **(flags[0] if flags else {})}
        area = box[2] * box[3]
        annotations.append(
            {"id": index + 1, "image_id": image_id, "category_id": label, "bbox": box, "area": area, **extra}
        )
    return {
        "images": [
            {"id": i, "width": 400, "height": 300, "file_name": f"{i}.jpg"} for i in range(1, images + 1)
        ],
        "annotations": annotations,
        "categories": [{"id": c, "name": f"class{c}"} for c in range(classes)],
    }


def detection(image_id: int, label: int, box: list[float], score: float) -> dict[str, Any]:
    return {"image_id": image_id, "category_id": label, "bbox": list(box), "score": score}


def perfect(objects: list[tuple[Any, ...]] = OBJECTS) -> list[dict[str, Any]]:
    return [detection(i, label, box, 0.9 - 0.05 * k) for k, (i, label, box, *_) in enumerate(objects)]


def _shifted(objects: list[tuple[Any, ...]] = OBJECTS) -> list[dict[str, Any]]:
    """Each box moved right by w/4: IoU = (w - w/4) / (w + w/4) = 0.6 exactly (in floating point too)."""
    dets = perfect(objects)
    for det in dets:
        det["bbox"][0] += det["bbox"][2] / 4
    return dets


# ------------------------------------------------------------------------------------ COCO


def test_coco_perfect_detections() -> None:
    metrics = coco_metrics(make_gt(OBJECTS), perfect())
    assert list(metrics) == list(COCO_METRIC_NAMES)
    for name in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR_10", "AR_100"):
        assert metrics[name] == pytest.approx(1.0, abs=1e-12), name
    # maxDets=1 keeps one box per image and class: class 0 finds 2 of its 3 objects (two on image 2).
    assert metrics["AR_1"] == pytest.approx((2 / 3 + 1 + 1) / 3, abs=1e-12)


def test_coco_iou_exactly_06() -> None:
    # IoU 0.6 passes the thresholds 0.50, 0.55, 0.60 of the ten 0.50:0.05:0.95 -> AP = 3/10.
    metrics = coco_metrics(make_gt(OBJECTS), _shifted())
    assert metrics["AP50"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["AP75"] == pytest.approx(0.0, abs=1e-6)
    for name in ("AP", "AP_small", "AP_medium", "AP_large", "AR_100"):
        assert metrics[name] == pytest.approx(0.3, abs=1e-6), name


def test_coco_false_positive_above_the_true_positive() -> None:
    gt = make_gt([(1, 0, [100, 100, 50, 50])], images=1, classes=1)
    tp = detection(1, 0, [100, 100, 50, 50], 0.8)
    fp = detection(1, 0, [0, 0, 30, 30], 0.9)
    # Ranked FP, TP: precision (0, 1/2) at recall (0, 1); the envelope is 1/2 at every recall -> AP 0.5.
    assert coco_metrics(gt, [fp, tp])["AP"] == pytest.approx(0.5, abs=1e-12)
    assert coco_metrics(gt, [fp, tp])["AR_100"] == pytest.approx(1.0, abs=1e-12)
    assert coco_metrics(gt, [{**fp, "score": 0.7}, tp])["AP"] == pytest.approx(1.0, abs=1e-12)


def test_coco_101_point_interpolation() -> None:
    gt = make_gt([(1, 0, [0, 0, 50, 50]), (1, 0, [100, 100, 50, 50])], images=1, classes=1)
    dets = [
        detection(1, 0, [0, 0, 50, 50], 0.9),
        detection(1, 0, [200, 200, 50, 50], 0.8),
        detection(1, 0, [100, 100, 50, 50], 0.7),
    ]
    # precision (1, 1/2, 2/3) at recall (1/2, 1/2, 1): 51 recall points 0..0.50 at 1, 50 at 2/3.
    assert coco_metrics(gt, dets)["AP"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)
    # VOC's all-point area under the same curve: 1/2 * 1 + 1/2 * 2/3.
    assert voc_map(gt, dets)["mAP50"] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)


def test_coco_no_detections() -> None:
    metrics = coco_metrics(make_gt(OBJECTS), [])
    assert all(value == 0.0 for value in metrics.values()), metrics
    empty = coco_metrics(make_gt([]), [])  # nothing to find: every value is undefined
    assert all(math.isnan(value) for value in empty.values()), empty


def test_coco_area_range_without_objects_is_nan() -> None:
    small_only = [o for o in OBJECTS if o[2][2] * o[2][3] < 32**2]
    metrics = coco_metrics(make_gt(small_only), perfect(small_only))
    assert (metrics["AP"], metrics["AP_small"]) == pytest.approx((1.0, 1.0), abs=1e-12)
    assert math.isnan(metrics["AP_medium"]) and math.isnan(metrics["AP_large"])


def test_coco_images_without_annotations() -> None:
    gt = make_gt(OBJECTS)  # image 4 has none
    assert coco_metrics(gt, [*perfect(), detection(4, 0, [0, 0, 50, 50], 0.01)])["AP"] == pytest.approx(1.0)
    # Ranked first, the FP on image 4 makes class 0's precision (0, 1/2, 2/3, 3/4) at recall
    # (0, 1/3, 2/3, 1): envelope 3/4 everywhere; classes 1 and 2 stay at 1 -> AP = (3/4 + 2) / 3.
    metrics = coco_metrics(gt, [*perfect(), detection(4, 0, [0, 0, 50, 50], 0.99)])
    assert metrics["AP"] == pytest.approx(11 / 12, abs=1e-12)


CROWD_BOX = [200, 100, 150, 150]
INSIDE_CROWD = [[210, 110, 30, 30], [250, 150, 30, 30], [300, 200, 40, 40]]


@pytest.mark.parametrize("flag", ["iscrowd", "ignore"])
def test_coco_crowd_and_difficult_regions(flag: str) -> None:
    objects = [(1, 0, [10, 10, 40, 40]), (1, 0, CROWD_BOX, {flag: 1})]
    dets = [detection(1, 0, box, 0.9 - 0.01 * k) for k, box in enumerate(INSIDE_CROWD)]
    dets.append(detection(1, 0, [10, 10, 40, 40], 0.5))
    gt = make_gt(objects, images=1, classes=1)
    before = copy.deepcopy(gt), copy.deepcopy(dets)
    # Matched by IoA (each box lies inside the region), they are neither TP nor FP; the region
    # itself costs no recall.
    assert coco_metrics(gt, dets)["AP"] == pytest.approx(1.0, abs=1e-12)
    assert coco_metrics(gt, dets[-1:])["AP"] == pytest.approx(1.0, abs=1e-12)
    assert (gt, dets) == before  # inputs untouched
    # As an ordinary object the region would be missed and the three boxes would be FPs.
    assert coco_metrics(make_gt(objects[:1], images=1, classes=1), dets)["AP"] < 0.3


def test_coco_rejects_unknown_images_and_classes() -> None:
    with pytest.raises(ValueError, match="image_id 9"):
        coco_metrics(make_gt(OBJECTS), [detection(9, 0, [0, 0, 5, 5], 0.5)])
    with pytest.raises(ValueError, match="category_id 7"):
        voc_map(make_gt(OBJECTS), [detection(1, 7, [0, 0, 5, 5], 0.5)])


def test_coco_verbose_prints(capsys: pytest.CaptureFixture[str]) -> None:
    coco_metrics(make_gt(OBJECTS), perfect())
    assert capsys.readouterr().out == ""
    coco_metrics(make_gt(OBJECTS), perfect(), verbose=True)
    assert "Average Precision" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- VOC

# One class, 3 objects (A, B on image 1, C on image 2), 4 detections in score order:
#   d1 0.9 on A -> TP; d2 0.8 on A again (IoU 90/110) -> FP (duplicate); d3 0.7 on B -> TP;
#   d4 0.6 on C (IoU 80/120) -> TP.
#   cumulative TP 1 1 2 3, FP 0 1 1 1 -> recall 1/3 1/3 2/3 1, precision 1 1/2 2/3 3/4.
#   All-point: the envelope (max precision at any recall to the right) is 1 up to recall 1/3 and
#   3/4 after -> AP = 1/3 * 1 + 2/3 * 3/4 = 5/6 (without the envelope it would be 1/3 + 2/9 + 1/4).
#   11-point: recall >= 0, .1, .2, .3 -> max precision 1; .4 ... 1.0 (7 points) -> 3/4
#   -> AP = (4 + 7 * 3/4) / 11 = 37/44.
#   Without d4 (C missed): recall 1/3 1/3 2/3, precision 1 1/2 2/3 -> AP = 1/3 + 1/3 * 2/3 = 5/9.
VOC_OBJECTS = [(1, 0, [0, 0, 10, 10]), (1, 0, [20, 20, 10, 10]), (2, 0, [0, 0, 10, 10])]
VOC_DETECTIONS = [
    detection(1, 0, [0, 0, 10, 10], 0.9),
    detection(1, 0, [1, 0, 10, 10], 0.8),
    detection(1, 0, [20, 20, 10, 10], 0.7),
    detection(2, 0, [0, 2, 10, 10], 0.6),
]


def test_voc_hand_computed() -> None:
    gt = make_gt(VOC_OBJECTS, images=2, classes=1)
    assert voc_map(gt, VOC_DETECTIONS)["mAP50"] == pytest.approx(5 / 6, abs=1e-12)
    assert voc_map(gt, VOC_DETECTIONS, use_07_metric=True)["mAP50"] == pytest.approx(37 / 44, abs=1e-12)
    assert voc_map(gt, VOC_DETECTIONS[::-1])["per_class"] == {"class0": pytest.approx(5 / 6, abs=1e-12)}
    assert voc_map(gt, VOC_DETECTIONS[:3])["mAP50"] == pytest.approx(5 / 9, abs=1e-12)


def test_voc_perfect_and_threshold() -> None:
    gt = make_gt(OBJECTS)
    result = voc_map(gt, perfect())
    assert result == {"mAP50": 1.0, "per_class": {"class0": 1.0, "class1": 1.0, "class2": 1.0}}
    assert voc_map(gt, perfect(), use_07_metric=True)["mAP50"] == pytest.approx(1.0, abs=1e-12)
    assert voc_map(gt, _shifted())["mAP50"] == pytest.approx(1.0, abs=1e-12)  # IoU 0.6
    assert voc_map(gt, _shifted(), iou_threshold=0.75) == {
        "mAP75": 0.0,
        "per_class": {"class0": 0.0, "class1": 0.0, "class2": 0.0},
    }
    assert voc_map(gt, []) == {"mAP50": 0.0, "per_class": {"class0": 0.0, "class1": 0.0, "class2": 0.0}}


def test_voc_difficult_objects_are_ignored() -> None:
    difficult = (2, 0, [30, 30, 10, 10], {"ignore": 1})
    gt = make_gt([*VOC_OBJECTS, difficult], images=2, classes=1)
    on_difficult = detection(2, 0, [30, 30, 10, 10], 0.95)
    twice = detection(2, 0, [31, 30, 10, 10], 0.85)
    assert voc_map(gt, VOC_DETECTIONS)["mAP50"] == pytest.approx(5 / 6, abs=1e-12)  # missed: no cost
    assert voc_map(gt, [on_difficult, twice, *VOC_DETECTIONS])["mAP50"] == pytest.approx(5 / 6, abs=1e-12)
    # The same object, not difficult: 4 positives. Missed: precision 1 1/2 2/3 3/4 at recall
    # 1/4 1/4 1/2 3/4 -> envelope 1 up to 1/4, 3/4 up to 3/4 -> AP = 1/4 + 1/2 * 3/4 = 5/8.
    plain = make_gt([*VOC_OBJECTS, difficult[:3]], images=2, classes=1)
    assert voc_map(plain, VOC_DETECTIONS)["mAP50"] == pytest.approx(5 / 8, abs=1e-12)
    # Found by the 0.95 box (TP): precision 1 1 2/3 3/4 4/5 at recall 1/4 1/2 1/2 3/4 1 -> envelope
    # 1 up to 1/2, 4/5 after -> AP = 1/2 + 1/2 * 4/5 = 9/10.
    assert voc_map(plain, [on_difficult, *VOC_DETECTIONS])["mAP50"] == pytest.approx(9 / 10, abs=1e-12)


def test_voc_class_without_objects_is_nan() -> None:
    gt = make_gt(VOC_OBJECTS, images=2, classes=2)
    result = voc_map(gt, [*VOC_DETECTIONS, detection(1, 1, [0, 0, 5, 5], 0.99)])
    assert math.isnan(result["per_class"]["class1"])
    assert result["mAP50"] == pytest.approx(5 / 6, abs=1e-12)


# ----------------------------------------------------------------------- detections_to_coco


def _decoded(boxes: list[list[list[float]]], scores: list[list[float]], labels: list[list[int]]) -> dict:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "scores": torch.tensor(scores),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def test_detections_to_coco_inverts_letterbox_exactly() -> None:
    # Wide 640x480 into 320x320: scale 1/2, pad_top 40. Tall 512x1024 (WxH): scale 5/16, pad_left 80.
    wide = [[10.0, 20.0, 110.0, 220.0], [600.0, 400.0, 640.0, 480.0], [0.0, 0.0, 5.0, 5.0]]
    tall = [[0.0, 0.0, 512.0, 1024.0], [100.5, 200.25, 300.0, 700.0], [0.0, 0.0, 5.0, 5.0]]
    to_input = lambda b, s, left, top: [b[0] * s + left, b[1] * s + top, b[2] * s + left, b[3] * s + top]  # noqa: E731
    decoded = _decoded(
        [[to_input(b, 0.5, 0, 40) for b in wide], [to_input(b, 0.3125, 80, 0) for b in tall]],
        [[0.9, 0.8, 0.01], [0.7, 0.6, 0.9]],
        [[1, 2, 0], [0, 1, -1]],  # last column: below the threshold, padding label
    )
    meta = [
        {"image_id": 5, "orig_size": torch.tensor([480, 640]), "letterbox": torch.tensor([0.5, 0.0, 40.0])},
        {
            "image_id": torch.tensor(7),
            "orig_size": torch.tensor([1024, 512]),
            "letterbox": torch.tensor([0.3125, 80, 0]),
        },
    ]
    results = detections_to_coco(decoded, meta, (320, 320), score_threshold=0.05)
    xywh = lambda b: [b[0], b[1], b[2] - b[0], b[3] - b[1]]  # noqa: E731
    assert results == [
        {"image_id": 5, "category_id": 1, "bbox": xywh(wide[0]), "score": pytest.approx(0.9)},
        {"image_id": 5, "category_id": 2, "bbox": xywh(wide[1]), "score": pytest.approx(0.8)},
        {"image_id": 7, "category_id": 0, "bbox": xywh(tall[0]), "score": pytest.approx(0.7)},
        {"image_id": 7, "category_id": 1, "bbox": xywh(tall[1]), "score": pytest.approx(0.6)},
    ]
    assert all(type(r["image_id"]) is int and type(r["category_id"]) is int for r in results)


def test_detections_to_coco_clips_and_drops() -> None:
    meta = [
        {"image_id": 1, "orig_size": torch.tensor([480, 640]), "letterbox": torch.tensor([0.5, 0.0, 40.0])}
    ]
    # Into the top padding: y (30 - 40) / 0.5 = -20 -> 0. Wholly in the padding: zero height, dropped.
    decoded = _decoded(
        [[[10, 30, 50, 100], [10, 0, 50, 30], [300, 250, 400, 400]]], [[0.5, 0.5, 0.5]], [[0, 0, 0]]
    )
    boxes = [r["bbox"] for r in detections_to_coco(decoded, meta, (320, 320))]
    assert boxes == [[20.0, 0.0, 80.0, 120.0], [600.0, 420.0, 40.0, 60.0]]


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
        ),
    ],
)
def test_detections_to_coco_plain_resize(device: str) -> None:
    # H 200, W 400 stretched to H 100, W 50: x * 8, y * 2; the second box ends past the right edge.
    meta = [{"image_id": 3, "orig_size": torch.tensor([200, 400])}]
    decoded = _decoded([[[5, 10, 25, 60], [45, 90, 55, 100]]], [[0.5, 0.25]], [[1, 0]])
    decoded = {key: value.to(device) for key, value in decoded.items()}
    results = detections_to_coco(decoded, meta, (100, 50))
    assert [r["bbox"] for r in results] == [[40.0, 20.0, 160.0, 100.0], [360.0, 180.0, 40.0, 20.0]]
    assert [(r["category_id"], r["score"]) for r in results] == [(1, 0.5), (0, 0.25)]


@pytest.mark.parametrize("height, width", [(375, 500), (500, 333)])
def test_detections_to_coco_inverts_the_letterbox_transform(height: int, width: int) -> None:
    original = torch.tensor([[12.0, 30.5, 200.0, 180.0], [0.0, 0.0, width, height]])
    target = {"boxes": tv_tensors.BoundingBoxes(original, format="XYXY", canvas_size=(height, width))}
    image = tv_tensors.Image(torch.zeros(3, height, width, dtype=torch.uint8))
    out_image, out_target = Letterbox((320, 320))(image, target)
    assert tuple(out_image.shape[-2:]) == (320, 320)
    decoded = {
        "boxes": out_target["boxes"].as_subclass(torch.Tensor)[None],
        "scores": torch.tensor([[0.9, 0.8]]),
        "labels": torch.tensor([[0, 1]]),
    }
    meta = [{"image_id": 1, "orig_size": torch.tensor([height, width]), "letterbox": out_target["letterbox"]}]
    results = detections_to_coco(decoded, meta, (320, 320))
    expected = torch.cat([original[:, :2], original[:, 2:] - original[:, :2]], dim=1)
    torch.testing.assert_close(
        torch.tensor([r["bbox"] for r in results], dtype=torch.float64), expected.double(), atol=1e-3, rtol=0
    )


def test_detections_to_coco_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="boxes"):
        detections_to_coco(_decoded([[[0, 0, 1, 1]]], [[0.5, 0.5]], [[0, 0]]), [{"image_id": 1}], (10, 10))


# ------------------------------------------------------------------------------ classification

# true 0 0 0 0 1 1 2 2 2, predicted 0 0 1 2 1 0 2 2 2; class "d" never occurs (zero division -> 0).
# matrix [[2,1,1],[1,1,0],[0,0,3]]; precision 2/3, 1/2, 3/4; recall 1/2, 1/2, 1;
# f1 = 2pr/(p+r): 4/7, 1/2, 6/7; accuracy 6/9.
LABELS = [0, 0, 0, 0, 1, 1, 2, 2, 2]
PREDICTED = [0, 0, 1, 2, 1, 0, 2, 2, 2]
NAMES = ["a", "b", "c", "d"]


def test_classification_metrics_hand_computed() -> None:
    result = classification_metrics(torch.tensor(LABELS), PREDICTED, NAMES)
    assert result["accuracy"] == pytest.approx(6 / 9)
    # balanced accuracy: mean recall over the classes that occur (sklearn's definition), "d" left out
    assert result["balanced_accuracy"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert result["confusion_matrix"] == [[2, 1, 1, 0], [1, 1, 0, 0], [0, 0, 3, 0], [0, 0, 0, 0]]
    expected = {
        "a": (2 / 3, 1 / 2, 4 / 7, 4),
        "b": (1 / 2, 1 / 2, 1 / 2, 2),
        "c": (3 / 4, 1.0, 6 / 7, 3),
        "d": (0.0, 0.0, 0.0, 0),
    }
    for name, (precision, recall, f1, support) in expected.items():
        row = result["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((precision, recall, f1)), name
        assert row["support"] == support
    assert result["macro_f1"] == pytest.approx((4 / 7 + 1 / 2 + 6 / 7) / 4)
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 4], [0, 0], NAMES)


def test_confusion_matrix_png(tmp_path) -> None:  # type: ignore[no-untyped-def]
    matrix = classification_metrics(LABELS, PREDICTED, NAMES[:3])["confusion_matrix"]
    axes = confusion_matrix_figure(matrix, NAMES[:3]).axes[0]
    assert [t.get_text() for t in axes.texts] == ["2", "1", "1", "1", "1", "0", "0", "0", "3"]
    path = plot_confusion_matrix(matrix, NAMES[:3], tmp_path / "plots" / "confusion.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
