"""Sliced inference, measured: accuracy against the letterboxed whole image, batching, parity, memory.

    python benchmarks/tiling.py --out DIR [--checkpoint CKPT] [--seconds 600] [--threads 2]
                                [--memory-side 10000] [--bccd-tiled CKPT --bccd-whole CKPT]

1. The model: `--checkpoint`, or `toolkit train configs/shapes_large_tiled.yaml --time SECONDS`
   (the light detector on 256 px windows of 512 px images with 12-40 px shapes); exported to ONNX.
2. Accuracy (`toolkit eval`, pycocotools) on the recipe's val split, 1536 px images with 30-60
   shapes: the whole image letterboxed to 256 px (`--no-tile`), then tiled (256 px, overlap 0.2)
   merged by NMS and by fusion, with and without the full-image pass. Goal: AP_small tiled >= 2x
   the whole image's, same model.
3. Parity: torch and onnxruntime detections of the tiled val images matched as sets (same label,
   box within 1e-3 px, score within 1e-4).
4. Batching: tiles/s of `predict(tile=...)` at batch 1 and batch 8, torch and onnxruntime, on the
   same images in alternating rounds (best of `--rounds`), `--threads` threads. Goal: batch 8 >= 1.5x
   batch 1.
5. Memory: peak resident memory of a process that predicts one `--memory-side`^2 image (uint8, in
   memory) in tiles with the ONNX model, and with the torch model. Goal: under 2 GB.
6. BCCD (with `--bccd-tiled` and `--bccd-whole`): a model trained on 256 px windows
   (configs/bccd_tiled.yaml) evaluated tiled, against one trained on letterboxed whole images
   (configs/bccd_centernet.yaml at 256 px), for the same time: AP, AP_small, Platelets AP.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from yolo_baseline import REPO, run, thread_env

CONFIG = REPO / "configs" / "shapes_large_tiled.yaml"
GOALS = {"AP_small_tiled_vs_whole": 2.0, "batched_vs_single_tiles_per_s": 1.5, "peak_memory_gb": 2.0}

MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys, torch
    kind, model_path, side, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    if kind == "onnx":
        from toolkit.export.runtime import OnnxModel
        model = OnnxModel(model_path, threads=threads)
    else:
        from toolkit.build import load_model
        model = load_model(model_path)
    from toolkit_plugins.datasets.shapes_dataset import ShapesDataset
    block = ShapesDataset(length=1, image_size=1536, seed=3, min_objects=60, max_objects=120,
                          object_size=(12, 40))[0][0]
    image = torch.empty(3, side, side, dtype=torch.uint8)  # filled block by block: no transient copy
    for y in range(0, side, 1536):
        for x in range(0, side, 1536):
            h, w = min(1536, side - y), min(1536, side - x)
            image[:, y : y + h, x : x + w] = block[:, :h, :w]
    del block
    started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = model.predict(image, tile={"size": 256, "overlap": 0.2, "batch": 8}, score_threshold=0.3)[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": round(peak, 1), "before_predict_mb": round(started, 1),
                      "image_mb": round(image.numel() / 2**20, 1), "detections": len(result["boxes"])}))
    """
)


def evaluate(checkpoint: Path, *flags: str, threads: int) -> dict[str, Any]:
    """`toolkit eval CKPT FLAGS --json`: the metrics."""
    command = [sys.executable, "-m", "toolkit", "eval", str(checkpoint), *flags, "--json", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, env=thread_env(threads), check=False)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr}")
    metrics = json.loads(done.stdout)
    keys = ("AP", "AP50", "AP_small", "AP_medium", "detections")
    summary = {key: metrics.get(key) for key in keys}
    summary["per_class_AP"] = {name: values["AP"] for name, values in metrics.get("per_class", {}).items()}
    return summary


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def matched(first: dict[str, Any], second: dict[str, Any]) -> int:
    """How many detections of `first` have a counterpart in `second` (label, box 1e-3 px, score 1e-4)."""
    import torch

    count = 0
    for box, score, label in zip(first["boxes"], first["scores"], first["labels"], strict=True):
        same = torch.as_tensor(second["labels"]) == label
        boxes, scores = torch.as_tensor(second["boxes"])[same], torch.as_tensor(second["scores"])[same]
        close = ((boxes - box).abs().max(dim=1).values <= 1e-3) & ((scores - score).abs() <= 1e-4)
        count += int(bool(close.any()))
    return count


def throughput(models: dict[str, Any], images: list[Any], rounds: int) -> dict[str, Any]:
    """Tiles/s of each model at tile batch 1 and 8 (best of `rounds` alternating rounds)."""
    from toolkit.tiling import tile_grid

    tiles = sum(len(tile_grid(*image.shape[-2:], (256, 256), 0.2)) for image in images)
    best: dict[str, dict[int, float]] = {name: {} for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            for batch in (1, 8):
                tile = {"size": 256, "overlap": 0.2, "batch": batch}
                model.predict(images[:1], tile=tile, score_threshold=0.3)  # warm up
                started = time.perf_counter()
                model.predict(images, tile=tile, score_threshold=0.3)
                rate = tiles / (time.perf_counter() - started)
                best[name][batch] = max(rate, best[name].get(batch, 0.0))
    return {
        name: {
            "tiles_per_s_batch_1": round(rates[1], 1),
            "tiles_per_s_batch_8": round(rates[8], 1),
            "batched_vs_single": round(rates[8] / rates[1], 2),
        }
        for name, rates in best.items()
    } | {"tiles": tiles}


def memory(kind: str, model_path: Path, side: int, threads: int) -> dict[str, Any]:
    command = [sys.executable, "-c", MEMORY_PROBE, kind, str(model_path), str(side), str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, env=thread_env(threads), check=False)
    if done.returncode != 0:
        raise SystemExit(f"memory probe failed ({kind}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, help="a trained tiled detector (default: train one)")
    parser.add_argument("--seconds", type=float, default=600.0, help="training time when training (600)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-side", type=int, default=10_000)
    parser.add_argument(
        "--bccd-tiled", type=Path, help="BCCD checkpoint trained on windows (bccd_tiled.yaml)"
    )
    parser.add_argument("--bccd-whole", type=Path, help="BCCD checkpoint trained on whole images, same time")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    toolkit = [sys.executable, "-m", "toolkit"]
    checkpoint = args.checkpoint
    if checkpoint is None:
        training = [
            "train",
            str(CONFIG),
            "--out",
            str(out / "run"),
            "--time",
            str(args.seconds),
            "--no-progress",
        ]
        run([*toolkit, *training], env=thread_env(args.threads))
        checkpoint = out / "run" / "best.pt"
    onnx_file = out / "model.onnx"
    run([*toolkit, "export", str(checkpoint), "-o", str(onnx_file)], env=thread_env(args.threads))

    report: dict[str, Any] = {"threads": args.threads, "checkpoint": str(checkpoint)}
    accuracy = {
        "whole_image": evaluate(checkpoint, "--no-tile", threads=args.threads),
        "tiled_nms": evaluate(checkpoint, "--merge", "nms", threads=args.threads),
        "tiled_fusion": evaluate(checkpoint, "--merge", "fusion", threads=args.threads),
        "tiled_nms_full_image": evaluate(checkpoint, "--merge", "nms", "--full-image", threads=args.threads),
        "tiled_fusion_full_image": evaluate(
            checkpoint, "--merge", "fusion", "--full-image", threads=args.threads
        ),
    }
    # null when the whole image scores 0 (its objects vanished): no finite ratio
    accuracy["AP_small_tiled_vs_whole"] = ratio(
        accuracy["tiled_nms"]["AP_small"], accuracy["whole_image"]["AP_small"]
    )
    report["accuracy"] = accuracy

    from toolkit.build import load_model
    from toolkit.export.runtime import OnnxModel
    from toolkit.spec import load_spec

    torch_model = load_model(checkpoint)
    onnx_model = OnnxModel(onnx_file, threads=args.threads)
    val = load_spec(CONFIG).data.val  # type: ignore[union-attr]
    from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

    dataset = ShapesDataset(
        length=3, image_size=val.image_size, seed=val.seed, min_objects=val.min_objects,  # type: ignore[attr-defined]
        max_objects=val.max_objects, object_size=tuple(val.object_size),  # type: ignore[attr-defined]
    )  # fmt: skip
    images = [dataset[i][0] for i in range(len(dataset))]
    tile = {"size": 256, "overlap": 0.2, "batch": 8}
    ours = torch_model.predict(images, tile=tile, score_threshold=0.05)
    theirs = onnx_model.predict(images, tile=tile, score_threshold=0.05)
    report["parity"] = {
        "torch_detections": sum(len(r["boxes"]) for r in ours),
        "onnx_detections": sum(len(r["boxes"]) for r in theirs),
        "torch_matched_in_onnx": sum(matched(a, b) for a, b in zip(ours, theirs, strict=True)),
        "onnx_matched_in_torch": sum(matched(b, a) for a, b in zip(ours, theirs, strict=True)),
    }
    report["batching"] = throughput(
        {"torch": torch_model, "onnxruntime": onnx_model}, images[:2], args.rounds
    )
    report["memory"] = {
        "side": args.memory_side,
        "onnxruntime": memory("onnx", onnx_file, args.memory_side, args.threads),
        "torch": memory("torch", checkpoint, args.memory_side, args.threads),
    }
    if args.bccd_tiled and args.bccd_whole:
        report["bccd"] = {
            "whole_image_model": evaluate(args.bccd_whole, "--no-tile", threads=args.threads),
            "tiled_model": evaluate(args.bccd_tiled, threads=args.threads),
        }
    batching = report["batching"]
    report["goals"] = {
        "AP_small_tiled_vs_whole": accuracy["AP_small_tiled_vs_whole"],
        "batched_vs_single_torch": batching["torch"]["batched_vs_single"],
        "batched_vs_single_onnxruntime": batching["onnxruntime"]["batched_vs_single"],
        "peak_memory_gb": round(
            max(report["memory"]["onnxruntime"]["peak_mb"], report["memory"]["torch"]["peak_mb"]) / 1024, 2
        ),
        "targets": GOALS,
    }
    (out / "tiling.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
