"""Runs the demo config (configs/demo_centernet_shapes.yaml) and prints AP, AP50 and wall time as JSON.

    python benchmarks/demo_accuracy.py [--busy N] [OVERRIDES ...]

The demo trains for `train.time_limit` seconds, so what it reaches depends on the machine's speed.
To measure a slower machine: `train.threads=1` (one of two cores: about half speed), or `--busy N`,
N spinning processes beside it (on 2 cores, `--busy 2` leaves the demo about a fifth of its
speed: torch's threads wait for each other when one is descheduled). The printed images_per_s
says which speed a run had. Overrides may follow (e.g. `train.time_limit=null train.epochs=2` for
a shortened run).
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
