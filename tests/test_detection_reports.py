"""What an evaluation shows: per-class AP/AP50/VOC AP50 and object counts (against pycocotools run
per class), the detection confusion matrix, the plots and prediction grid a run writes, the tables."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FIXTURE_PLUGINS, run_cli
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from test_trainer import DETECTION

import toolkit
from toolkit.engine.report import format_metrics, format_run_summary
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec
from toolkit_plugins.tasks.detection_confusion import detection_confusion_matrix
from toolkit_plugins.tasks.detection_evaluator import DetectionEvaluator
from toolkit_plugins.tasks.detection_metrics import coco_metrics, voc_map

NAMES = ["cat", "dog", "bird"]


def ground_truth(objects: list[tuple[int, int, list[float], int]]) -> dict[str, Any]:
    """COCO ground truth on three 300x300 images from (image_id, label, xywh, difficult) tuples."""
    annotations = [
        {"id": n + 1, "image_id": i, "category_id": c, "bbox": box, "iscrowd": 0, "ignore": d}
        for n, (i, c, box, d) in enumerate(objects)
    ]
    images = [{"id": i, "width": 300, "height": 300, "file_name": f"{i}.png"} for i in (1, 2, 3)]
    categories = [{"id": k, "name": name} for k, name in enumerate(NAMES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def det(image_id: int, label: int, box: list[float], score: float) -> dict[str, Any]:
    return {"image_id": image_id, "category_id": label, "bbox": box, "score": score}


# cats: two hits (one at IoU 0.6) and a false positive scored between them; a difficult cat
# detected (ignored); dogs: one hit, one missed, a false positive above the hit; birds: none.
TRUTH = ground_truth(
    [
        (1, 0, [10, 10, 40, 40], 0),
        (1, 1, [100, 100, 50, 50], 0),
        (2, 0, [20, 20, 40, 40], 0),
        (2, 1, [60, 120, 40, 40], 0),
        (2, 0, [150, 150, 30, 30], 1),
        (3, 1, [10, 200, 60, 30], 0),
    ]
)
DETECTIONS = [
    det(1, 0, [10, 10, 40, 40], 0.9),
    det(2, 0, [200, 10, 20, 20], 0.8),
    det(2, 0, [30, 20, 40, 40], 0.7),  # cat 2 shifted by w/4: IoU 0.6
    det(2, 0, [150, 150, 30, 30], 0.6),  # on the difficult cat
    det(1, 1, [100, 100, 50, 50], 0.5),
    det(3, 1, [200, 200, 40, 40], 0.95),
    det(3, 1, [10, 200, 60, 30], 0.3),
    det(3, 2, [250, 250, 20, 20], 0.4),  # a bird where there is none
]


def pycocotools_per_class(
    truth: dict[str, Any], detections: list[dict[str, Any]], k: int
) -> tuple[float, float]:
    """AP and AP50 of class k from pycocotools itself (params.catIds = [k]), difficult as crowd,
    area from the box."""
    gt = copy.deepcopy(truth)
    for annotation in gt["annotations"]:
        annotation["iscrowd"] = annotation.pop("ignore")
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluation = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(detections)), iouType="bbox")
        evaluation.params.catIds = [k]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0]), float(evaluation.stats[1])


def test_per_class_values_equal_pycocotools_per_class_and_voc(tmp_path: Path) -> None:
    evaluator = DetectionEvaluator(TRUTH)
    evaluator.detections = copy.deepcopy(DETECTIONS)
    evaluator.seen = {1, 2, 3}
    metrics = evaluator.compute(tmp_path)
    per_class = metrics["per_class"]
    assert list(per_class) == NAMES
    voc = voc_map(TRUTH, DETECTIONS)["per_class"]
    for k, name in enumerate(NAMES[:2]):
        ap, ap50 = pycocotools_per_class(TRUTH, DETECTIONS, k)
        assert per_class[name]["AP"] == pytest.approx(ap, abs=1e-12), name
        assert per_class[name]["AP50"] == pytest.approx(ap50, abs=1e-12), name
        assert per_class[name]["VOC_AP50"] == pytest.approx(voc[name], abs=1e-12), name
    assert (
        per_class["cat"]["objects"] == 2 and per_class["dog"]["objects"] == 3
    )  # the difficult cat not counted
    cat, dog = per_class["cat"], per_class["dog"]
    assert cat["AP50"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)  # hit, FP, hit
    assert dog["AP50"] != cat["AP50"] and dog["AP"] != cat["AP"] and cat["AP"] < cat["AP50"]
    assert voc["cat"] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)
    bird = per_class["bird"]
    assert bird["objects"] == 0 and all(math.isnan(bird[key]) for key in ("AP", "AP50", "VOC_AP50"))
    assert {k: metrics[k] for k in coco_metrics(TRUTH, DETECTIONS)} == pytest.approx(
        coco_metrics(TRUTH, DETECTIONS), nan_ok=True
    )  # the summary is unchanged by the per-class refactor
    for name in ("pr_curves.png", "confusion.png"):
        assert_png(tmp_path / name, min_side=400)
    table = format_metrics(metrics, ["AP", "AP50"])
    assert "class  objects  AP      AP50    VOC AP50" in table
    assert f"cat    2        {cat['AP']:.4f}  {cat['AP50']:.4f}  {voc['cat']:.4f}" in table
    assert "bird   0        -       -       -" in table  # no objects: no AP, shown as "-" (never nan)
    assert "nan" not in table


def test_only_the_images_seen_are_scored() -> None:
    """Image 1 alone, both objects found: AP 1 (the objects of images 2 and 3 are not misses)."""
    import torch

    evaluator = DetectionEvaluator(TRUTH)
    result = {
        "boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0], [100.0, 100.0, 150.0, 150.0]]),
        "scores": torch.tensor([0.9, 0.8]),
        "labels": torch.tensor([0, 1]),
    }
    evaluator.update([result], {}, [{"image_id": 1}])
    metrics = evaluator.compute()
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP"] == pytest.approx(1.0)
    assert metrics["per_class"]["cat"]["objects"] == 1 and metrics["per_class"]["dog"]["objects"] == 1
    assert metrics["confusion_matrix"][0][0] == 1 and metrics["confusion_matrix"][1][3] == 0
    evaluator.update([{**result, "boxes": result["boxes"][:0], "scores": result["scores"][:0],
                       "labels": result["labels"][:0]}], {}, [{"image_id": 2}])  # fmt: skip
    # image 2's cat missed: recall 1/2 at precision 1, 51 of the 101 recall points
    assert evaluator.compute()["per_class"]["cat"]["AP50"] == pytest.approx(51 / 101)


def test_confusion_matrix_counts() -> None:
    truth = ground_truth(
        [
            (1, 0, [0, 0, 10, 10], 0),  # cat: detected as cat, and once more (duplicate)
            (1, 1, [50, 50, 10, 10], 0),  # dog: detected as cat
            (2, 1, [0, 0, 10, 10], 0),  # dog: missed (its only detection scores below 0.25)
            (2, 0, [200, 200, 20, 20], 1),  # difficult cat: neither it nor a detection on it counts
        ]
    )
    detections = [
        det(1, 0, [0, 0, 10, 10], 0.9),
        det(1, 0, [50, 50, 10, 10], 0.8),
        det(1, 0, [0, 0, 10, 10], 0.6),
        det(2, 1, [100, 100, 10, 10], 0.7),  # a dog where there is nothing
        det(2, 1, [0, 0, 10, 10], 0.1),
        det(2, 0, [200, 200, 20, 20], 0.9),
    ]
    # rows: true cat, dog, bird, background; columns: predicted cat, dog, bird, background
    assert detection_confusion_matrix(truth, detections) == [
        [1, 0, 0, 0],
        [1, 0, 0, 1],
        [0, 0, 0, 0],
        [1, 1, 0, 0],
    ]
    assert detection_confusion_matrix(truth, detections, score_threshold=0.05)[1] == [1, 1, 0, 0]
    # greedy by score: the better-scored detection takes the object, the other becomes background
    overlapping = [det(1, 1, [0, 0, 10, 10], 0.5), det(1, 0, [1, 0, 10, 10], 0.7)]
    matrix = detection_confusion_matrix(truth, overlapping)
    assert matrix[0] == [1, 0, 0, 0] and matrix[3] == [0, 1, 0, 0] and matrix[1][3] == 2


def test_classification_per_class_table_keeps_its_columns() -> None:
    from toolkit_plugins.tasks.classification_metrics import classification_metrics

    metrics = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["cat", "dog"])
    lines = format_metrics(metrics, ["accuracy"]).splitlines()
    assert lines[0].split() == ["metric", "value"] and lines[2].split() == ["accuracy", "0.7500"]
    assert ["class", "support", "precision", "recall", "f1"] in [line.split() for line in lines]
    assert ["dog", "2", "0.6667", "1.0000", "0.8000"] in [line.split() for line in lines]


#: test_trainer's tiny detection spec, one short epoch without workers
SPEC = {
    **DETECTION,
    "data": {
        **DETECTION["data"],
        "train": {"type": "shapes", "length": 8, "image_size": 64, "seed": 0},
        "val": {"type": "shapes", "length": 6, "image_size": 64, "seed": 1},
        "augment": [{"type": "resize"}],
        "num_workers": 0,
    },
    "train": {"epochs": 1, "device": "cpu", "threads": 2},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One short in-process detection training (reused below)."""
    directory = tmp_path_factory.mktemp("reports")
    spec_path = directory / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FIXTURE_PLUGINS))
        manager = PluginManager()
        spec = load_spec(spec_path, plugins=manager)
        summary = toolkit.train(spec, out_dir=directory / "run", plugins=manager, show_progress=False)
    for name in [name for name in sys.modules if name.startswith("fixture_")]:
        del sys.modules[name]  # as conftest's fixture_plugins_on_path leaves it
    return directory / "run", summary


def assert_png(path: Path, *, min_side: int) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert min(image.size) >= min_side, (path, image.size)


def test_a_run_writes_plots_grid_and_per_class_records(run: tuple[Path, Any]) -> None:
    folder, summary = run
    assert_png(folder / "pr_curves.png", min_side=400)
    assert_png(folder / "confusion.png", min_side=300)
    assert_png(folder / "val_predictions.png", min_side=256)
    with Image.open(folder / "val_predictions.png") as grid:  # 6 pairs: 3 per row
        assert grid.size[0] >= 6 * 256 and grid.size[1] >= 2 * 256
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["kind"] == "val"][-1]["metrics"]
    assert list(val["per_class"]) == ["circle", "square", "triangle"]
    assert set(val["per_class"]["circle"]) == {"AP", "AP50", "VOC_AP50", "objects"}
    objects = sum(v["objects"] for v in val["per_class"].values())
    matrix = val["confusion_matrix"]
    assert len(matrix) == 4 and all(len(row) == 4 for row in matrix)
    assert sum(sum(row[:3]) + row[3] for row in matrix[:3]) == objects  # each object counted once
    text = format_run_summary(summary)
    assert "VOC AP50" in text and "triangle" in text
    assert {"pr_curves", "confusion", "val_predictions"} <= set(summary.files)


def test_eval_cli_prints_the_per_class_table(run: tuple[Path, Any], tmp_path: Path) -> None:
    folder, _ = run
    result = run_cli("eval", str(folder / "best.pt"), "--out", str(tmp_path), pythonpath=[FIXTURE_PLUGINS])
    assert result.returncode == 0, result.stderr
    assert "class     objects  AP" in result.stdout and "VOC AP50" in result.stdout
    for name in ("circle", "square", "triangle"):
        assert any(line.startswith(name) for line in result.stdout.splitlines()), name
    assert "eval " in result.stderr  # plain progress lines (not a terminal)
    assert (tmp_path / "val_predictions.png").is_file() and (tmp_path / "pr_curves.png").is_file()

    def refuse(constant: str) -> None:
        raise AssertionError(f"metrics.json is not strict JSON: {constant}")

    quiet = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)
    assert set(quiet["per_class"]["square"]) == {"AP", "AP50", "VOC_AP50", "objects"}
