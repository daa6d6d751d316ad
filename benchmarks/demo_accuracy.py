"""Runs the demo config (configs/demo_centernet_shapes.yaml) and prints AP, AP50 and wall time as JSON.

Overrides may follow (e.g. `train.epochs=2` for a shortened run).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from toolkit.engine.trainer import train
from toolkit.spec import load_spec

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    overrides = sys.argv[1:]
    spec = load_spec(REPO / "configs/demo_centernet_shapes.yaml", overrides)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as temp:
        summary = train(spec, out_dir=Path(temp) / "run", show_progress=False)
    wall = time.perf_counter() - started
    metrics = summary.final_metrics
    print(
        json.dumps(
            {
                "benchmark": "demo_accuracy",
                "overrides": overrides,
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
