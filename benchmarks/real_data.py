"""Ours against YOLOv8n on real images (BCCD), trained from scratch for the same time on the same cores.

    python benchmarks/real_data.py --out DIR [--config SPEC] [--seconds 600] [--size PX] [--threads 2]

1. The data: `toolkit data export` writes BCCD's val split as COCO (the ground truth both are scored
   against) and both splits as YOLO txt (what Ultralytics trains on): the same pixels, the same boxes.
2. Ours: `toolkit train configs/bccd_centernet.yaml --time SECONDS`, then `toolkit predict best.pt`
   on the val images with `--coco-gt`: results_coco.json as it is.
3. YOLOv8n: in a virtual environment this script makes (`pip install ultralytics`; never a
   dependency of the project), `YOLO("yolov8n.yaml")` (no weights: from scratch) trains with
   `time=SECONDS` (Ultralytics' own time budget), `val=False` (ours does not evaluate while it
   trains either), torch and OpenMP held to the same threads; it predicts the val images.
4. Both result files are scored by pycocotools against the same file, at the same score
   threshold (0.001) and detection cap (100): AP, AP50 and per-class AP.

Prints one JSON object: each model's scores and training seconds, and ours / YOLOv8n ratios.
"""

from __future__ import annotations

import argparse
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
import json, sys, torch
from pathlib import Path
data, size, seconds, out, threads, images, truth, conf, cap = sys.argv[1:10]
torch.set_num_threads(int(threads))
from ultralytics import YOLO
model = YOLO("yolov8n.yaml")
model.train(
    data=data, imgsz=int(size), time=float(seconds) / 3600, epochs=10000, batch=16, workers=0,
    device="cpu", plots=False, val=False, amp=False, pretrained=False, project=out, name="train",
    exist_ok=True, verbose=False,
)
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
    """A virtual environment with ultralytics (made once, reused)."""
    python = folder / "bin" / "python"
    if not (folder / ".ready").exists():
        run([sys.executable, "-m", "venv", str(folder)])
        run([str(python), "-m", "pip", "install", "--quiet", "ultralytics", "pycocotools"])
        (folder / ".ready").touch()
    return python


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "bccd_centernet.yaml")
    parser.add_argument("--seconds", type=float, default=600.0, help="training time of each (default 600)")
    parser.add_argument("--size", type=int, default=None, help="input size of both (default: the config's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-yolo", action="store_true", help="ours only")
    parser.add_argument("--venv", type=Path, default=None, help="the ultralytics venv (default OUT/venv)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.size is None:
        from toolkit.spec import load_spec

        args.size = max(load_spec(args.config).model.input_size)
    toolkit = [sys.executable, "-m", "toolkit"]
    env = thread_env(args.threads)
    size = [f"model.input_size={args.size}", f"train.threads={args.threads}"]
    coco = out / "coco_val"
    if not coco.exists():
        run([*toolkit, "data", "export", str(args.config), str(coco), "--format", "coco", "--split", "val"])
    truth = coco / "annotations" / "instances.json"
    report: dict[str, Any] = {"seconds": args.seconds, "size": args.size, "threads": args.threads}

    ours = out / "ours"
    run([*toolkit, "train", str(args.config), *size, "--out", str(ours), "--time", str(args.seconds),
         "--no-progress"], env=env)  # fmt: skip
    run([*toolkit, "predict", str(ours / "best.pt"), str(coco / "images"), "--out", str(ours / "predict"),
         "--threshold", str(SCORE_THRESHOLD), "--coco-gt", str(truth)], env=env)  # fmt: skip
    import torch

    trained = torch.load(ours / "last.pt", weights_only=True)["time_budget"]["used"]
    report["ours"] = {
        **coco_scores(truth, ours / "predict" / "results_coco.json"),
        "train_seconds": round(trained, 1),
        "images_per_s": our_speed(ours / "metrics.jsonl"),
    }

    if not args.skip_yolo:
        yolo_data = out / "yolo"
        if not yolo_data.exists():
            for split in ("train", "val"):
                run(
                    [
                        *toolkit,
                        "data",
                        "export",
                        str(args.config),
                        str(yolo_data),
                        "--format",
                        "yolo",
                        "--split",
                        split,
                    ]
                )
        python = ultralytics_python(args.venv or out / "venv")
        script = out / "yolo_run.py"
        script.write_text(YOLO_SCRIPT)
        yolo_out = out / "yolov8n"
        command = [str(python), str(script), str(yolo_data / "data.yaml"), str(args.size), str(args.seconds)]
        command += [str(yolo_out), str(args.threads), str(coco / "images"), str(truth)]
        command += [str(SCORE_THRESHOLD), str(MAX_DETECTIONS)]
        seconds = run(command, env=env, cwd=out)
        report["yolov8n"] = {
            **coco_scores(truth, yolo_out / "results_coco.json"),
            "wall_seconds": round(seconds, 1),
            **yolo_epochs(yolo_out / "train" / "results.csv", yolo_data),
        }
        for key in ("AP", "AP50"):  # null when YOLOv8n scored 0: no ratio to give
            theirs = report["yolov8n"][key]
            report[f"ratio_{key}"] = round(report["ours"][key] / theirs, 3) if theirs > 0 else None
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
