"""What the benchmarks that race Ultralytics share: the YOLO run, pycocotools scores, threads, commands.

Ultralytics lives in a virtual environment made here (`ultralytics_python`), never in the project.
`YOLO_SCRIPT` runs inside it: trains `MODEL.yaml` from scratch for a time budget (Ultralytics' own
`time=`; `val=False`, as ours does not evaluate while it trains), predicts the val images into a
COCO results file, and with EXPORT=1 writes its ONNX export with NMS inside (dynamic batch).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCORE_THRESHOLD = 0.001
MAX_DETECTIONS = 100

YOLO_SCRIPT = """
import json, sys, time, torch
from pathlib import Path
name, data, size, seconds, out, threads, images, truth, conf, cap, export = sys.argv[1:12]
torch.set_num_threads(int(threads))
from ultralytics import YOLO
model = YOLO(f"{name}.yaml")
started = time.perf_counter()
model.train(
    data=data, imgsz=int(size), time=float(seconds) / 3600, epochs=10000, batch=16, workers=0,
    device="cpu", plots=False, val=False, amp=False, pretrained=False, project=out, name="train",
    exist_ok=True, verbose=False,
)
trained = time.perf_counter() - started
gt = json.loads(Path(truth).read_text())
image_id = {Path(i["file_name"]).name: i["id"] for i in gt["images"]}
category = {c["name"]: c["id"] for c in gt["categories"]}
results = []
for result in model.predict(
    source=images, imgsz=int(size), conf=float(conf), max_det=int(cap), device="cpu", stream=True,
    verbose=False,
):
    boxes = result.boxes
    for (x1, y1, x2, y2), score, label in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist()):
        results.append({
            "image_id": image_id[Path(result.path).name],
            "category_id": category[model.names[int(label)]],
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score,
        })
Path(out, "results_coco.json").write_text(json.dumps(results))
summary = {"train_seconds": trained}
if export == "1":
    summary["onnx"] = str(Path(model.export(
        format="onnx", imgsz=int(size), nms=True, dynamic=True, simplify=True, conf=float(conf),
        max_det=int(cap), device="cpu",
    )).resolve())
Path(out, "summary.json").write_text(json.dumps(summary))
"""


def run(command: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO) -> float:
    """Run a command (its output passed through to stderr); its wall seconds."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, stdout=sys.stderr, stderr=sys.stderr, check=False)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}")
    return time.perf_counter() - started


def coco_scores(truth: Path, results: Path) -> dict[str, Any]:
    """AP, AP50 and per-class AP (IoU 0.5:0.95, all areas, 100 detections) by pycocotools."""
    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ground = COCO(str(truth))
        detections = json.loads(results.read_text())
        if not detections:
            return {"AP": 0.0, "AP50": 0.0, "per_class_AP": {c["name"]: 0.0 for c in ground.cats.values()}}
        evaluation = COCOeval(ground, ground.loadRes(detections), "bbox")
        evaluation.params.maxDets = [1, 10, MAX_DETECTIONS]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # [IoU, recall, class]
    per_class = {}
    for index, category in enumerate(evaluation.params.catIds):
        values = precision[:, :, index]
        valid = values[values > -1]
        per_class[ground.cats[category]["name"]] = round(float(np.mean(valid)) if valid.size else 0.0, 4)
    return {"AP": round(float(evaluation.stats[0]), 4), "AP50": round(float(evaluation.stats[1]), 4),
            "per_class_AP": per_class}  # fmt: skip


def our_speed(metrics: Path) -> float:
    """Mean training images/s over the run's logged intervals (metrics.jsonl)."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    speeds = [row["images_per_s"] for row in rows if row.get("kind") == "train" and "images_per_s" in row]
    return round(sum(speeds) / len(speeds), 2) if speeds else 0.0


def yolo_epochs(results_csv: Path, data: Path) -> dict[str, Any]:
    """Epochs Ultralytics trained (its results.csv) and the training images they hold."""
    if not results_csv.exists():
        return {}
    epochs = max(0, len(results_csv.read_text().strip().splitlines()) - 1)
    folder = data / "images" / "train"
    images = sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0
    return {"epochs": epochs, "train_images": images}


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    return env


def ultralytics_python(folder: Path) -> Path:
    """A virtual environment with ultralytics and its ONNX exporter (made once, reused)."""
    python = folder / "bin" / "python"
    if not (folder / ".ready-onnx").exists():
        if not python.exists():
            run([sys.executable, "-m", "venv", str(folder)])
        packages = ["ultralytics", "pycocotools", "onnx", "onnxslim", "onnxruntime"]
        run([str(python), "-m", "pip", "install", "--quiet", *packages])
        (folder / ".ready-onnx").touch()
    return python


def export_data(config: Path, folder: Path, fmt: str, splits: tuple[str, ...]) -> None:
    """`toolkit data export` of the config's splits (skipped when the folder exists)."""
    if folder.exists():
        return
    for split in splits:
        run([sys.executable, "-m", "toolkit", "data", "export", str(config), str(folder), "--format", fmt,
             "--split", split])  # fmt: skip


def train_yolo(
    python: Path, name: str, data: Path, *, size: int, seconds: float, out: Path, threads: int,
    images: Path, truth: Path, export: bool,
) -> dict[str, Any]:  # fmt: skip
    """Train `name` (yolov8n, yolov8s, ...) from scratch in the venv; its scores and what it wrote."""
    script = out.parent / "yolo_run.py"
    script.write_text(YOLO_SCRIPT)
    command = [str(python), str(script), name, str(data / "data.yaml"), str(size), str(seconds), str(out)]
    command += [str(threads), str(images), str(truth), str(SCORE_THRESHOLD), str(MAX_DETECTIONS)]
    command += ["1" if export else "0"]
    wall = run(command, env={**thread_env(threads), "YOLO_OFFLINE": "1"}, cwd=out.parent)
    summary = json.loads((out / "summary.json").read_text())
    epochs = yolo_epochs(out / "train" / "results.csv", data)
    speed = epochs["epochs"] * epochs["train_images"] / summary["train_seconds"] if epochs else 0.0
    return {
        **coco_scores(truth, out / "results_coco.json"),
        "wall_seconds": round(wall, 1),
        "train_seconds": round(summary["train_seconds"], 1),
        "images_per_s": round(speed, 2),
        **epochs,
        **({"onnx": summary["onnx"]} if export else {}),
    }
