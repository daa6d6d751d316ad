"""`toolkit data export`, `preview` and `stats`: a spec's dataset written out, drawn or counted."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from toolkit.build import Builder
from toolkit.contracts import CountsDatasets, ExportsDatasets, HasGroundTruth
from toolkit.data import writers
from toolkit.errors import ToolkitError
from toolkit.outputs import check_output_dir, check_output_file
from toolkit.spec import load_spec


def export(args: argparse.Namespace) -> int:
    """`toolkit data export SPEC OUT --format F`: in a format the dataset's task writes."""
    check_output_dir(args.out, "output folder")
    spec = load_spec(args.spec, args.overrides, plugins=args.manager)
    builder = Builder(args.manager)
    dataset = builder.dataset(spec, args.split)
    task = _task_of(dataset, builder, args.split)
    formats = task.dataset_formats if isinstance(task, ExportsDatasets) else ()
    if args.format not in formats:
        instead = f"use --format {' or '.join(formats)}" if formats else "its task writes no dataset format"
        raise ToolkitError(
            f"--format {args.format}: data.{args.split} is a {task.name} dataset ({type(dataset).__name__}), "
            f"which this format cannot hold; {instead}"
        )
    write = {
        "coco": writers.write_coco,
        "voc": writers.write_voc,
        "yolo": writers.write_yolo,
        "folder": writers.write_image_folder,
    }
    options = {"split": args.split} if args.format in ("voc", "yolo") else {}
    where = write[args.format](dataset, args.out, **options)
    print(f"wrote {len(dataset)} images of data.{args.split} as {args.format} to {where}")
    return 0


def preview(args: argparse.Namespace) -> int:
    """`toolkit data preview SPEC`: a PNG grid of samples as the model sees them, targets drawn."""
    if args.count < 1:
        raise ToolkitError(f"-n must be at least 1, got {args.count}")
    check_output_file(args.output, "-o", example="preview.png")
    spec = load_spec(args.spec, args.overrides, plugins=args.manager)
    from toolkit.data.preview import preview_grid, write_preview

    grid = preview_grid(spec, Builder(args.manager), split=args.split, count=args.count)
    path = write_preview(grid, args.output)
    print(f"wrote {path}")
    return 0


def stats(args: argparse.Namespace) -> int:
    """`toolkit data stats SPEC`: images and objects per class, box sizes (table or JSON, and a PNG)."""
    from toolkit.data.stats import box_stats, label_stats, plot_stats

    if args.output:
        check_output_file(args.output, "-o", example="stats.png")
    spec = load_spec(args.spec, args.overrides, plugins=args.manager)
    builder = Builder(args.manager)
    dataset = builder.dataset(spec, args.split)
    task = _task_of(dataset, builder, args.split)
    if isinstance(task, CountsDatasets):
        stats = task.dataset_stats(dataset)
    else:  # a task that does not say: boxes when the dataset has a ground truth, else labels
        stats = box_stats(dataset) if isinstance(dataset, HasGroundTruth) else label_stats(dataset)
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
    else:
        print(f"data.{args.split}: {stats.images} images")
        print(stats.table())
    if args.output:
        print(f"wrote {plot_stats(stats, args.output)}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _task_of(dataset: Any, builder: Builder, split: str) -> Any:
    """The task that reads the dataset's targets natively (its `task`)."""
    return builder.task(dataset.task, named_by=f"data.{split} ({type(dataset).__name__})")
