"""Start-up time of `toolkit --help` against `python -c "import pluggy, pydantic"`, measured in one run.

Prints JSON: median wall times over N runs each (interleaved) and their ratio. `--help` must stay
light: it imports argparse and pluggy, never torch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    help_command = [sys.executable, "-m", "toolkit", "--help"]
    baseline_command = [sys.executable, "-c", "import pluggy, pydantic"]
    wall_time(help_command), wall_time(baseline_command)  # warm the file cache
    help_times, baseline_times = [], []
    for _ in range(args.runs):
        help_times.append(wall_time(help_command))
        baseline_times.append(wall_time(baseline_command))
    help_median = statistics.median(help_times)
    baseline_median = statistics.median(baseline_times)
    print(
        json.dumps(
            {
                "benchmark": "cli_startup",
                "runs": args.runs,
                "toolkit_help_s": round(help_median, 4),
                "import_pluggy_pydantic_s": round(baseline_median, 4),
                "ratio": round(help_median / baseline_median, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
