"""Ours against YOLOv8n on real images (BCCD), trained from scratch for the same time on the same cores.

    python benchmarks/real_data.py --out DIR [--config SPEC] [--seconds 600] [--size PX] [--threads 2]

1. The data: `toolkit data export` writes BCCD's val split as COCO (the ground truth both are scored
   against) and both splits as YOLO txt (what Ultralytics trains on): the same pixels, the same boxes.
2. Ours: `toolkit train configs/bccd_centernet.yaml --time SECONDS`, then `toolkit predict best.pt`
   on the val images with `--coco-gt`: results_coco.json as it is.
3. YOLOv8n: in a virtual environment this script makes (`pip install ultralytics`; never a
   dependency of the project), `YOLO("yolov8n.yaml")` (no weights: from scratch) trains with
   `time=SECONDS` (Ultralytics' own time budget), `val=False` (ours does not evaluate while it
   trains either), torch and OpenMP held to the same threads; it predicts the val images
   (`yolo_baseline.py`, shared with `frontier.py`).
4. Both result files are scored by pycocotools against the same file, at the same score
   threshold (0.001) and detection cap (100): AP, AP50 and per-class AP.

Prints one JSON object: each model's scores and training seconds, and ours / YOLOv8n ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from yolo_baseline import (
    REPO,
    SCORE_THRESHOLD,
    coco_scores,
    export_data,
    our_speed,
    run,
    thread_env,
    train_yolo,
    ultralytics_python,
)


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
    export_data(args.config, coco, "coco", ("val",))
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
        export_data(args.config, yolo_data, "yolo", ("train", "val"))
        python = ultralytics_python(args.venv or out / "venv")
        report["yolov8n"] = train_yolo(
            python, "yolov8n", yolo_data, size=args.size, seconds=args.seconds, out=out / "yolov8n",
            threads=args.threads, images=coco / "images", truth=truth, export=False,
        )  # fmt: skip
        for key in ("AP", "AP50"):  # null when YOLOv8n scored 0: no ratio to give
            theirs = report["yolov8n"][key]
            report[f"ratio_{key}"] = round(report["ours"][key] / theirs, 3) if theirs > 0 else None
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
