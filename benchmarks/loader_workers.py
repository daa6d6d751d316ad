"""Training images/s of the demo recipe by DataLoader worker count, measured in one run; prints JSON.

The detection demo (`configs/demo_centernet_shapes.yaml`: batch 4, 128 px, torch on all the
machine's threads) trains a short epoch through toolkit's Trainer with `data.num_workers` set to
each of --workers in turn, alternating over rounds (best of N). On a CPU-only machine the workers'
rendering and augmentation compete with torch's threads for the same cores; the ratio is each count's
images/s against the first count's. The demo runs with the fastest count measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from trainer_overhead import toolkit_loop  # benchmarks/ is the script's folder, on sys.path

from toolkit.spec import load_spec

REPO = Path(__file__).resolve().parents[1]


def epoch_images_per_s(workers: int, images: int, threads: int, out: Path) -> float:
    """One epoch of `images` demo images with `workers` DataLoader workers, through the Trainer."""
    spec = load_spec(
        REPO / "configs/demo_centernet_shapes.yaml",
        [
            f"data.train.length={images}",
            f"data.num_workers={workers}",
            "data.val=null",
            f"train.threads={threads}",
            "train.epochs=1",
        ],
    )
    return toolkit_loop(spec, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[2, 0, 1], help="counts; the first is the baseline"
    )
    parser.add_argument("--images", type=int, default=240, help="training images per measured epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    args = parser.parse_args()
    measured: dict[int, list[float]] = {count: [] for count in args.workers}
    with tempfile.TemporaryDirectory() as temp:
        for round_ in range(args.rounds):
            for count in args.workers:
                out = Path(temp) / f"w{count}-r{round_}"
                measured[count].append(epoch_images_per_s(count, args.images, args.threads, out))
    best = {count: max(values) for count, values in measured.items()}
    baseline = args.workers[0]
    print(
        json.dumps(
            {
                "benchmark": "loader_workers",
                "config": "configs/demo_centernet_shapes.yaml",
                "images_per_epoch": args.images,
                "torch_threads": args.threads,
                "cpu_count": os.cpu_count(),
                "images_per_s": {str(count): round(value, 2) for count, value in best.items()},
                "ratio_to_baseline": {
                    str(count): round(value / best[baseline], 3) for count, value in best.items()
                },
                "baseline_workers": baseline,
                "fastest_workers": max(best, key=best.__getitem__),
                "rounds": {str(count): [round(v, 2) for v in values] for count, values in measured.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
