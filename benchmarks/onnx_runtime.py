"""CPU latency of CenterNet-ResNet18 (decode included): torch eager vs onnxruntime fp32, fp16, int8; JSON.

All run batch 1 at the same thread count (`--threads`, default 2) in one process: torch eager (eval,
`inference_mode`, `model.decode(model(x))`), then the exported file (`toolkit.export.onnx_export`) on
onnxruntime's CPU execution provider in fp32, converted to fp16 and quantized to int8
(`toolkit.export.precision`, calibrated on a few letterboxed `shapes` images). Latency: median over
`--runs` runs after `--warmup`, each engine measured in `--rounds` alternating rounds (best median
kept). Goals: `ort_fp32_vs_eager` (eager / ort fp32) >= 1.3, `int8_vs_fp32` (ort fp32 / int8) >= 1.5.
fp16 is reported for information: x86 CPUs run it about as fast as fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from toolkit.build import build_model
from toolkit.export.onnx_export import export_onnx
from toolkit.export.precision import convert_fp16, quantize_int8
from toolkit.inference import preprocess
from toolkit.spec import load_spec
from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

REPO = Path(__file__).resolve().parents[1]
GOALS = {"ort_fp32_vs_eager": 1.3, "int8_vs_fp32": 1.5}


def median_ms(fn: Callable[[], object], runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def session(path: Path, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(REPO / "configs/centernet_resnet18.yaml"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=8, help="shapes images to calibrate int8 on")
    parser.add_argument("--out", default=None, help="keep the ONNX files here (default: a temporary folder)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = load_spec(args.config, [f"model.input_size={args.size}"])
    model = build_model(spec).eval()
    size = (args.size, args.size)
    dataset = ShapesDataset(length=args.calibration + 1, image_size=args.size, seed=3)
    images, _ = preprocess([dataset[i][0] for i in range(args.calibration + 1)], size)
    x = images[:1].contiguous()
    feed = {"images": x.numpy()}
    calibration = [images[i : i + 1].numpy() for i in range(1, args.calibration + 1)]

    with tempfile.TemporaryDirectory(prefix="toolkit-bench-") as temp:
        folder = Path(args.out or temp)
        folder.mkdir(parents=True, exist_ok=True)
        exported = export_onnx(model, folder / "centernet_fp32.onnx", spec=spec.model_dump(mode="json"))
        started = time.perf_counter()
        fp16_path = convert_fp16(exported.path, folder / "centernet_fp16.onnx")
        fp16_seconds = time.perf_counter() - started
        started = time.perf_counter()
        int8_path = quantize_int8(exported.path, folder / "centernet_int8.onnx", calibration)
        int8_seconds = time.perf_counter() - started
        paths = {"ort_fp32": exported.path, "ort_fp16": fp16_path, "ort_int8": int8_path}
        sessions = {name: session(path, args.threads) for name, path in paths.items()}

        def eager() -> object:
            with torch.inference_mode():
                return model.decode(model(x))

        engines: dict[str, Callable[[], object]] = {"eager": eager}
        for name, sess in sessions.items():
            engines[name] = lambda sess=sess: sess.run(None, feed)
        results: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(args.rounds):
            for name, fn in engines.items():
                results[name].append(median_ms(fn, args.runs, args.warmup))
        latency = {name: min(values) for name, values in results.items()}

        reference = {k: v.numpy() for k, v in eager().items()}
        agreement = {}
        for name, sess in sessions.items():
            got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed), strict=True))
            agreement[f"{name}_top_score_abs_diff"] = float(
                abs(got["scores"][0, 0] - reference["scores"][0, 0])
            )
        sizes = {name: path.stat().st_size for name, path in paths.items()}

    ratios = {
        "ort_fp32_vs_eager": latency["eager"] / latency["ort_fp32"],
        "int8_vs_fp32": latency["ort_fp32"] / latency["ort_int8"],
        "fp16_vs_fp32": latency["ort_fp32"] / latency["ort_fp16"],
    }
    import onnxruntime as ort

    report = {
        "benchmark": "onnx_runtime",
        "model": Path(args.config).name,
        "input": [args.size, args.size],
        "batch": 1,
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "decode_included": True,
        "latency_ms": {name: round(value, 2) for name, value in latency.items()},
        "latency_ms_per_round": {name: [round(v, 2) for v in values] for name, values in results.items()},
        "ratios": {name: round(value, 3) for name, value in ratios.items()},
        "goals": GOALS,
        "goals_met": {name: ratios[name] >= goal for name, goal in GOALS.items()},
        "export_seconds": {
            "fp32": round(exported.seconds, 2),
            "fp16": round(fp16_seconds, 2),
            "int8": round(int8_seconds, 2),
        },
        "calibration_images": args.calibration,
        "size_bytes": sizes,
        "size_mb": {name: round(value / 2**20, 1) for name, value in sizes.items()},
        "agreement_vs_eager": {k: float(f"{v:.3g}") for k, v in agreement.items()},
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__},
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
