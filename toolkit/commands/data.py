"""`toolkit data export`, `preview` and `stats`: a spec's dataset written out, drawn or counted."""

from __future__ import annotations

import argparse
import json
import sys

from toolkit.build import Builder
from toolkit.data import writers
from toolkit.errors import ToolkitError
from toolkit.outputs import check_output_dir, check_output_file
from toolkit.spec import load_spec


def export(args: argparse.Namespace) -> int:

    check_output_dir(args.out, "output folder")
    spec = load_spec(args.spec, args.overrides, plugins=args.manager)
    dataset = Builder(args.manager).dataset(spec, args.split)
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
    from toolkit.data.stats import compute_stats, plot_stats

    if args.output:
        check_output_file(args.output, "-o", example="stats.png")
    spec = load_spec(args.spec, args.overrides, plugins=args.manager)
    stats = compute_stats(Builder(args.manager).dataset(spec, args.split))
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
    else:
        print(f"data.{args.split}: {stats.images} images")
        print(stats.table())
    if args.output:
        print(f"wrote {plot_stats(stats, args.output)}", file=sys.stderr if args.json else sys.stdout)
    return 0
