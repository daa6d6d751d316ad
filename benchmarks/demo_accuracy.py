"""Runs the demo config (configs/demo_centernet_shapes.yaml) and prints AP, AP50 and wall time as JSON.

    python benchmarks/demo_accuracy.py [--busy N] [OVERRIDES ...]

`--busy N` runs N spinning processes beside it (N = the number of cores: about half speed for the
demo), to measure what a slow machine gets (with `train.time_limit=SECONDS`: what the same time
reaches at that speed). Overrides may follow (e.g. `train.epochs=2` for a shortened run).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

from toolkit.engine.trainer import train
from toolkit.spec import load_spec

REPO = Path(__file__).resolve().parents[1]


def spin() -> None:
    """Keep one core busy until terminated."""
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--busy", type=int, default=0, help="spinning processes beside the demo (default 0)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    overrides = args.overrides
    spec = load_spec(REPO / "configs/demo_centernet_shapes.yaml", overrides)
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for process in spinners:
        process.start()
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as temp:
            summary = train(spec, out_dir=Path(temp) / "run", show_progress=False)
    finally:
        for process in spinners:
            process.terminate()
    wall = time.perf_counter() - started
    metrics = summary.final_metrics
    print(
        json.dumps(
            {
                "benchmark": "demo_accuracy",
                "overrides": overrides,
                "busy_processes": args.busy,
                "AP": round(metrics.get("AP", float("nan")), 4),
                "AP50": round(metrics.get("AP50", float("nan")), 4),
                "AP75": round(metrics.get("AP75", float("nan")), 4),
                "wall_time_s": round(wall, 1),
                "train_time_s": summary.train_seconds,
                "images_per_s": summary.images_per_second,
                "goal": {"AP50": 0.85, "AP": 0.60, "wall_time_s": 600},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
