"""The speed/accuracy frontier: our detector recipes against YOLOv8n and YOLOv8s, in one run; JSON + plot.

    python benchmarks/frontier.py --out DIR [--seconds S] [--datasets demo,bccd] [--threads 2]
                                  [--recipes NAME,...] [--yolo yolov8n,yolov8s] [--venv PATH]

For each dataset (the demo's `shapes` data at 128 px; BCCD from ../shared/datasets/bccd at 256 px)
and each model, on the same cores, at the same input size:
1. trains from scratch for the same time (the demo data: the demo's 570 s; BCCD: 300 s; or
   `--seconds` for all): ours with `toolkit train --time`, where a
   recipe's `model.backbone` and `model.head` replace the dataset config's (its training recipe, its
   `max_detections`); YOLO with Ultralytics' own `time=` in a virtual environment this script makes
   (`yolo_baseline.py`; never a dependency of the project);
2. scores the val split with pycocotools (AP, AP50, per-class AP; score threshold 0.001, 100
   detections): ours through `toolkit predict --coco-gt`, YOLO through its own predict;
3. reports training images/s (ours: the run's metrics; YOLO: epochs x images / training seconds);
4. exports ONNX (ours: `toolkit export`, verified against torch, decode in the graph, and `--int8`
   for the int8 rows; YOLO: Ultralytics' export with its NMS inside) and times every file in this
   process on onnxruntime's CPU provider with `--threads` threads at batch 1 and batch 8: median of
   `--runs` runs, in `--rounds` rounds that alternate the files (the best median kept).

Prints one JSON object (also OUT/frontier.json) with every model's figures per dataset and the
issue's goals checked, and draws AP against batch-1 latency (OUT/frontier.png).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from onnx_runtime import median_ms, session
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

from toolkit.spec import merged_spec

RECIPES = {
    "centernet_resnet18": REPO / "configs" / "centernet_resnet18_shapes.yaml",
    "centernet_resnet18_light": REPO / "configs" / "centernet_resnet18_light.yaml",
    "centernet_resnet18_nano": REPO / "configs" / "centernet_resnet18_nano.yaml",
    "centernet_mobilenetv4_light": REPO / "configs" / "centernet_mobilenetv4_light.yaml",
}
BASELINE = "centernet_resnet18"  # the full-width ResNet-18: the demo's model before the light family
#: dataset -> (config whose data and training recipe every recipe uses, input size, training seconds):
#: the demo data gets the demo's own budget, so every recipe races the full-width ResNet-18 on its terms
DATASETS = {
    "demo": (REPO / "configs" / "demo_centernet_shapes.yaml", 128, 570.0),
    "bccd": (REPO / "configs" / "bccd_centernet.yaml", 256, 300.0),
}
DEMO_TARGET = {"AP50": 0.88, "AP": 0.63}  # what the full-width ResNet-18 reached as the demo in 570 s
DEMO_SECONDS = 570


def model_overrides(recipe: Path, base: Path, size: int, threads: int) -> list[str]:
    """Overrides that put the recipe's backbone and head on the dataset config `base`."""
    ours = merged_spec(recipe)["model"]
    head = dict(ours["head"])
    head["max_detections"] = merged_spec(base)["model"]["head"]["max_detections"]
    return [
        f"model.backbone={json.dumps(ours['backbone'])}",
        f"model.head={json.dumps(head)}",
        f"model.input_size={size}",
        f"train.threads={threads}",
    ]


def train_ours(
    recipe: Path,
    base: Path,
    *,
    size: int,
    seconds: float,
    out: Path,
    threads: int,
    images: Path,
    truth: Path,
    int8: bool,
) -> dict[str, Any]:
    """Train, score, export (and quantize) one recipe on one dataset."""
    import torch

    toolkit = [sys.executable, "-m", "toolkit"]
    env = thread_env(threads)
    overrides = model_overrides(recipe, base, size, threads)
    run(
        [
            *toolkit,
            "train",
            str(base),
            *overrides,
            "--out",
            str(out),
            "--time",
            str(seconds),
            "--no-progress",
        ],
        env=env,
    )
    checkpoint = out / "best.pt"
    scoring = ["--threshold", str(SCORE_THRESHOLD), "--coco-gt", str(truth)]
    run([*toolkit, "predict", str(checkpoint), str(images), "--out", str(out / "predict"), *scoring], env=env)
    trained = torch.load(out / "last.pt", weights_only=True)["time_budget"]["used"]
    report = {
        **coco_scores(truth, out / "predict" / "results_coco.json"),
        "train_seconds": round(trained, 1),
        "images_per_s": our_speed(out / "metrics.jsonl"),
        "onnx": str(out / "model.onnx"),
    }
    run([*toolkit, "export", str(checkpoint), "-o", str(out / "model.onnx")], env=env)
    if int8:
        run([*toolkit, "export", str(checkpoint), "-o", str(out / "model_int8.onnx"), "--int8"], env=env)
        int8_out = out / "predict_int8"
        run(
            [
                *toolkit,
                "predict",
                str(out / "model_int8.onnx"),
                str(images),
                "--out",
                str(int8_out),
                *scoring,
            ],
            env=env,
        )
        report["int8"] = {
            **coco_scores(truth, out / "predict_int8" / "results_coco.json"),
            "onnx": str(out / "model_int8.onnx"),
        }
    return report


def time_files(files: dict[str, Path], size: int, threads: int, runs: int, rounds: int) -> dict[str, dict]:
    """Median batch-1 and batch-8 latency (ms) of each ONNX file, in alternating rounds (best kept)."""
    import numpy as np

    def latency(runner: Any, batch: int) -> float:
        feed = {
            runner.get_inputs()[0].name: np.random.default_rng(0).random((batch, 3, size, size), np.float32)
        }
        return median_ms(lambda: runner.run(None, feed), runs if batch == 1 else 1 + runs // 4, 3)

    sessions = {name: session(path, threads) for name, path in files.items()}
    best: dict[str, dict[str, float]] = {name: {} for name in files}
    for _ in range(rounds):
        for name, runner in sessions.items():
            for batch in (1, 8):
                ms = latency(runner, batch)
                key = f"latency_b{batch}_ms"
                best[name][key] = round(min(ms, best[name].get(key, float("inf"))), 2)
    for name, path in files.items():
        best[name]["onnx_mb"] = round(path.stat().st_size / 1e6, 1)
    return best


def goals(report: dict[str, dict[str, dict]], recipes: list[str]) -> dict[str, Any]:
    """The issue's goals, each with the recipes that meet it."""
    light = [name for name in recipes if name != BASELINE]
    checked: dict[str, Any] = {}
    if all("yolov8n" in models for models in report.values()):
        fast = []
        for name in light:
            if all(
                models[name]["latency_b1_ms"] <= 0.75 * models["yolov8n"]["latency_b1_ms"]
                and models[name]["AP"] > models["yolov8n"]["AP"]
                and models[name]["AP50"] > models["yolov8n"]["AP50"]
                for models in report.values()
            ):
                fast.append(name)
        checked["beats_yolov8n_at_0.75x_latency_on_all_datasets"] = fast
        if "demo" in report:
            demo = report["demo"]
            checked["matches_demo_recipe_within_yolov8n_latency"] = [
                name
                for name in light
                if demo[name]["latency_b1_ms"] <= demo["yolov8n"]["latency_b1_ms"]
                and all(demo[name][key] >= value for key, value in DEMO_TARGET.items())
                and demo[name]["train_seconds"] <= DEMO_SECONDS
            ]
    if BASELINE in recipes:
        checked["throughput_vs_demo_recipe"] = {
            dataset: {
                name: {
                    "images_per_s_ratio": round(
                        models[name]["images_per_s"] / models[BASELINE]["images_per_s"], 2
                    ),
                    "AP50_at_least_baseline": models[name]["AP50"] >= models[BASELINE]["AP50"],
                }
                for name in light
            }
            for dataset, models in report.items()
        }
    checked["int8"] = {
        dataset: {
            name: {
                "AP_change": round(models[name]["int8"]["AP"] - models[name]["AP"], 4),
                "latency_ratio_fp32_over_int8": round(
                    models[name]["latency_b1_ms"] / models[name]["int8"]["latency_b1_ms"], 2
                ),
            }
            for name in light
            if "int8" in models[name]
        }
        for dataset, models in report.items()
    }
    return checked


def plot(report: dict[str, dict[str, dict]], path: Path) -> None:
    """AP (and AP50, hollow) against batch-1 ONNX latency, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    figure, axes = plt.subplots(1, len(report), figsize=(6 * len(report), 4.5), squeeze=False)
    for axis, (dataset, models) in zip(axes[0], report.items(), strict=True):
        for name, figures in models.items():
            colour = "tab:red" if name.startswith("yolo") else "tab:blue"
            at = figures["latency_b1_ms"]
            axis.scatter(at, figures["AP"], color=colour)
            axis.scatter(at, figures["AP50"], facecolors="none", edgecolors=colour)
            label = name.replace("centernet_", "")
            axis.annotate(label, (at, figures["AP"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
            if "int8" in figures:
                int8 = figures["int8"]
                axis.scatter(int8["latency_b1_ms"], int8["AP"], color=colour, marker="x")
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.xaxis.set_major_formatter(ticker.ScalarFormatter())
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
        axis.set_xlabel("ONNX CPU latency, batch 1 (ms, log)")
        axis.set_ylabel("AP (filled), AP50 (hollow); x: int8")
        axis.set_title(f"{dataset}: ours (blue) vs YOLOv8 (red)")
        axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="training time of each model (default: demo 570, bccd 300)",
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--yolo", default="yolov8n,yolov8s", help="Ultralytics models ('' for none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=40, help="timed runs at batch 1 (batch 8: a quarter)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 rows of the light recipes")
    parser.add_argument("--venv", type=Path, default=None, help="the ultralytics venv (default OUT/venv)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    recipes = [name for name in args.recipes.split(",") if name]
    yolos = [name for name in args.yolo.split(",") if name]
    python = ultralytics_python(args.venv or out / "venv") if yolos else None
    report: dict[str, dict[str, dict]] = {}
    for dataset in args.datasets.split(","):
        base, size, default_seconds = DATASETS[dataset]
        seconds = args.seconds or default_seconds
        folder = out / dataset
        coco = folder / "coco_val"
        export_data(base, coco, "coco", ("val",))
        truth, images = coco / "annotations" / "instances.json", coco / "images"
        models: dict[str, dict] = {}
        for name in recipes:
            models[name] = train_ours(
                RECIPES[name],
                base,
                size=size,
                seconds=seconds,
                out=folder / name,
                threads=args.threads,
                images=images,
                truth=truth,
                int8=not args.no_int8 and name != BASELINE,
            )
        if yolos:
            export_data(base, folder / "yolo", "yolo", ("train", "val"))
        for name in yolos:
            models[name] = train_yolo(
                python,  # type: ignore[arg-type]
                name,
                folder / "yolo",
                size=size,
                seconds=seconds,
                out=folder / name,
                threads=args.threads,
                images=images,
                truth=truth,
                export=True,
            )
        files = {name: Path(figures["onnx"]) for name, figures in models.items()}
        for name, figures in models.items():
            if "int8" in figures:
                files[f"{name}/int8"] = Path(figures["int8"]["onnx"])
        timings = time_files(files, size, args.threads, args.runs, args.rounds)
        for key, figures in timings.items():
            name, _, variant = key.partition("/")
            (models[name][variant] if variant else models[name]).update(figures)
        report[dataset] = models
        print(json.dumps({dataset: models}), file=sys.stderr)
    sizes = {dataset: DATASETS[dataset][1] for dataset in report}
    seconds = {dataset: args.seconds or DATASETS[dataset][2] for dataset in report}
    result = {
        "settings": {"seconds": seconds, "threads": args.threads, "sizes": sizes},
        "datasets": report,
        "goals": goals(report, recipes),
    }
    (out / "frontier.json").write_text(json.dumps(result, indent=2))
    plot(report, out / "frontier.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
