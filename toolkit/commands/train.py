"""`toolkit train`: check the run folder, load the spec, train, print the run's summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from toolkit.engine.report import format_run_summary
from toolkit.engine.run_dir import check_run_dir, is_main_process
from toolkit.spec import load_spec


def run(args: argparse.Namespace) -> int:
    """`toolkit train SPEC`: the run folder is checked before anything heavy is imported."""

    out = Path(args.out) if args.out else None
    if is_main_process():  # before anything is loaded; the trainer checks again and locks the folder
        check_run_dir(out or Path("runs") / Path(args.spec).stem, resume=args.resume, exist_ok=args.exist_ok)
    from toolkit.engine.trainer import train

    overrides = [*args.overrides, *([f"train.time_limit={args.time}"] if args.time is not None else [])]
    spec = load_spec(args.spec, overrides, plugins=args.manager)
    summary = train(
        spec,
        out_dir=out,
        resume=args.resume,
        exist_ok=args.exist_ok,
        plugins=args.manager,
        show_progress=not args.no_progress,
    )
    if summary.files:  # rank 0 under torchrun
        print(format_run_summary(summary))
    return 0
