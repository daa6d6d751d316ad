"""Command line: parse arguments, call the API, print, map user errors to exit code 2.

Only argparse is imported up front: `toolkit --help` never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from toolkit import strict_json
from toolkit.outputs import check_no_overwrite, check_output_dir, check_output_file, record_written

EXIT_USER_ERROR = 2
#: what `toolkit attack` writes into its --out folder
ATTACK_FILES = ("attack.json", "examples.png", "sweep.png", "patch.png")
#: `toolkit plugins` names the plugins whose module takes at least this long to import
SLOW_IMPORT_SECONDS = 1.0


def _add_plugin_option(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    parser.add_argument(
        "-p",
        "--plugin",
        action="append",
        metavar="MODULE",
        dest="plugins" if top_level else "command_plugins",
        default=[],
        help="load a plugin module (repeatable); '-p no:NAME' disables an installed plugin",
    )


def build_parser() -> argparse.ArgumentParser:
    from toolkit import __version__

    parser = argparse.ArgumentParser(
        prog="toolkit",
        description="Plugin-based detection and classification: every experiment is a spec file.",
    )
    parser.add_argument("--version", action="version", version=f"toolkit {__version__}")
    _add_plugin_option(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _add_plugin_option(sub, top_level=False)
        sub.set_defaults(handler=handler)
        return sub

    plugins = command("plugins", _cmd_plugins, "list plugins and the components they register")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    schema = command(
        "schema", _cmd_schema, "print the JSON Schema of spec files (installed plugins included)"
    )
    schema.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")

    for name, handler, help_text in (
        ("validate", _cmd_validate, "check a spec file against the installed plugins"),
        ("build", _cmd_build, "build the spec's model and print parameters and output shapes"),
    ):
        sub = command(name, handler, help_text)
        sub.add_argument("spec", metavar="SPEC", help="spec file (.yaml, .yml or .json)")
        sub.add_argument(
            "overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. model.input_size=256"
        )
        if name == "validate":
            sub.add_argument(
                "--print",
                action="store_true",
                dest="print_spec",
                help="print the merged spec (extends chain and overrides applied) as YAML first",
            )
    train = command("train", _cmd_train, "train the spec's model on its data (torchrun for several GPUs)")
    train.add_argument("spec", metavar="SPEC", help="spec file with model, data and train sections")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. train.epochs=3")
    train.add_argument("--out", metavar="DIR", help="run folder (default runs/<spec name>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    train.add_argument(
        "--exist-ok", action="store_true", help="allow an --out folder that is not empty and not a run"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress output")
    train.add_argument(
        "--time", metavar="SECONDS", type=float,
        help="train for this many seconds instead of train.epochs (sets train.time_limit)",
    )  # fmt: skip

    evaluate = command("eval", _cmd_eval, "evaluate a checkpoint on data.val (COCO mAP or accuracy)")
    evaluate.add_argument(
        "spec",
        metavar="SPEC|CKPT",
        help="a spec file (with --checkpoint), or a run's checkpoint alone (its own spec)",
    )
    evaluate.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="spec overrides")
    evaluate.add_argument("--checkpoint", metavar="CKPT", help="last.pt or best.pt of a run (with a SPEC)")
    evaluate.add_argument("--split", choices=["train", "val"], default="val")
    evaluate.add_argument(
        "--out", metavar="DIR", help="write metrics.json, the plots and val_predictions.png there"
    )
    evaluate.add_argument("--json", action="store_true", help="print metrics as JSON")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress output")

    export = command(
        "export", _cmd_export, "export a model to ONNX (decoding in the graph), verified against torch"
    )
    export.add_argument(
        "target", metavar="SPEC|CKPT", help="a spec file (with --checkpoint) or a run's checkpoint"
    )
    export.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="spec overrides, e.g. export.opset=18"
    )
    export.add_argument("--checkpoint", metavar="CKPT", help="weights for a SPEC target (best.pt / last.pt)")
    export.add_argument("-o", "--output", metavar="FILE", help="ONNX file (default: next to the checkpoint)")
    export.add_argument("--opset", type=int, metavar="N", help="ONNX opset (>= 18)")
    export.add_argument("--dynamic", choices=["batch", "batch,hw"], help="dynamic axes (default batch)")
    export.add_argument(
        "--fp16", action="store_true", default=None, help="fp16 weights, float32 inputs/outputs"
    )
    export.add_argument("--int8", action="store_true", default=None, help="static int8 quantization (QDQ)")
    export.add_argument(
        "--no-decode", dest="decode", action="store_false", default=None, help="export the raw head outputs"
    )
    export.add_argument(
        "--no-verify", dest="verify", action="store_false", default=None, help="skip the check against torch"
    )

    predict = command("predict", _cmd_predict, "predict images with an ONNX file or a checkpoint")
    predict.add_argument(
        "model", metavar="MODEL", help="model.onnx, a run's checkpoint, or a spec (with --checkpoint)"
    )
    predict.add_argument("sources", nargs="+", metavar="SOURCE", help="image files, folders or glob patterns")
    predict.add_argument("--checkpoint", metavar="CKPT", help="weights when MODEL is a spec")
    predict.add_argument(
        "--out", metavar="DIR", help="write predictions.json, results_coco.json and drawn images"
    )
    predict.add_argument(
        "--threshold", "--score-threshold", dest="threshold", type=float, default=0.3, metavar="S",
        help="drop detections below S (default 0.3)",
    )  # fmt: skip
    predict.add_argument("--batch", type=int, default=8, metavar="N", help="images per batch (default 8)")
    predict.add_argument("--device", default="cpu", help="checkpoints: cpu (default) or cuda[:N]")
    predict.add_argument("--provider", help="ONNX files: auto (default), tensorrt, cuda or cpu")
    predict.add_argument("--json", action="store_true", help="print the results as JSON")
    predict.add_argument(
        "--coco-gt", metavar="FILE",
        help="the images' COCO annotation file: results_coco.json takes its image and category ids",
    )  # fmt: skip

    attack = command(
        "attack", _cmd_attack, "attack a model on its data: clean vs adversarial metrics, examples, sweeps"
    )
    attack.add_argument(
        "target", metavar="SPEC|CKPT", help="a spec file (with --checkpoint) or a run's checkpoint"
    )
    attack.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="spec overrides, e.g. attack.method.eps=0.0314"
    )
    attack.add_argument("--checkpoint", metavar="CKPT", help="the weights, when the target is a spec")
    attack.add_argument("--out", metavar="DIR", help="report folder (default: runs/attack/<target name>)")
    attack.add_argument(
        "--sweep",
        metavar="NAME=V1,V2,...",
        help="also run the attack for each value, e.g. eps=0,1/255,2/255,4/255",
    )
    attack.add_argument(
        "--onnx", metavar="FILE", help="also score the adversarial images with this exported model"
    )
    attack.add_argument("--no-progress", action="store_true", help="no progress bars")

    command("env", _cmd_env, "versions of torch, CUDA, onnxruntime and its providers, GPUs")

    demo = command("demo", _cmd_demo, "the main job offline: train, evaluate and draw CenterNet on shapes")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the demo config")
    demo.add_argument("--out", metavar="DIR", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument(
        "--config", metavar="SPEC", help="demo spec (default configs/demo_centernet_shapes.yaml)"
    )
    demo.add_argument(
        "--finetune",
        action="store_true",
        help="instead: the fine-tuning comparison (scratch, frozen, unfrozen, ...) over seeds",
    )
    demo.add_argument(
        "--weights",
        metavar="FILE",
        help="--finetune pretrained backbone (default: OUT/pretrain/best.pt, pretrained once if missing)",
    )
    demo.add_argument(
        "--seeds", type=int, default=3, metavar="N", help="--finetune seeds per row (default 3)"
    )

    _add_data_commands(commands)
    return parser


def _add_data_commands(commands: Any) -> None:
    data = commands.add_parser("data", help="export, preview and describe datasets", description="datasets")
    data_commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    def data_command(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> Any:
        sub = data_commands.add_parser(name, help=help_text, description=help_text)
        _add_plugin_option(sub, top_level=False)
        sub.set_defaults(handler=handler)
        sub.add_argument("spec", metavar="SPEC", help="spec file with a data section")
        return sub

    export = data_command(
        "export", _cmd_data_export, "write data.<split> to disk as COCO, VOC, YOLO or class folders"
    )
    export.add_argument("out", metavar="DIR", help="output folder")
    export.add_argument(
        "--format",
        choices=["coco", "voc", "yolo", "folder"],
        default="coco",
        help="coco (default), voc, yolo (Ultralytics: images/, labels/, data.yaml) or folder",
    )
    preview = data_command("preview", _cmd_data_preview, "draw augmented samples with boxes into a PNG grid")
    preview.add_argument("-n", "--count", type=int, default=16, help="number of samples (default 16)")
    preview.add_argument("-o", "--output", default="preview.png", help="PNG file (default preview.png)")
    stats = data_command("stats", _cmd_data_stats, "images and objects per class, box sizes (table + PNG)")
    stats.add_argument("-o", "--output", default=None, help="also write a PNG histogram there")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    for sub in (export, preview, stats):
        sub.add_argument("--split", choices=["train", "val"], default="train")
        sub.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="spec overrides")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `toolkit` command; returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may follow options (`toolkit train SPEC --out DIR key=value`): argparse leaves them over
    stray = [token for token in extra if token.startswith("-") or "=" not in token]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    from toolkit.errors import ToolkitError, debug_enabled

    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            from toolkit import plugins

            # the one default plugin manager of this process; handlers pass it on explicitly
            args.manager = plugins.configure(modules=[*args.plugins, *args.command_plugins])
            return int(args.handler(args))
        except ToolkitError as exc:
            return _report(exc, str(exc), exc.exit_code, debug=debug_enabled())
        except OSError as exc:  # a file or folder the system refused (full disk, permissions, ...)
            return _report(exc, _os_error_text(exc), EXIT_USER_ERROR, debug=debug_enabled())
        except KeyboardInterrupt:
            print("toolkit: interrupted", file=sys.stderr)
            return 130


def _report(exc: BaseException, message: str, code: int, *, debug: bool) -> int:
    """One line on stderr; with TOOLKIT_DEBUG=1 the traceback (and its causes) first."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    print(f"toolkit: error: {message}", file=sys.stderr)
    return code


def _os_error_text(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    return f"{exc.filename}{target}: {reason}"


def _show_warning(
    message: Any, category: type[Warning], filename: str, lineno: int, *_: Any, **__: Any
) -> None:
    print(f"toolkit: warning: {message}", file=sys.stderr)


def _count(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


# -- commands ---------------------------------------------------------------------------------
def _params_schema(entry: Any) -> dict[str, Any]:
    """The JSON Schema of a component's parameters as a spec validates them: the plugin's own and
    the core's (a backbone's `pretrained` also takes a weights file), without `type`."""
    from toolkit.spec.derived import component_model

    schema = component_model(entry).model_json_schema()
    schema.get("properties", {}).pop("type", None)
    schema["required"] = [name for name in schema.get("required", []) if name != "type"]
    if not schema["required"]:
        del schema["required"]
    return schema


def _cmd_plugins(args: argparse.Namespace) -> int:
    from toolkit.table import format_table

    manager = args.manager
    plugins = [
        {
            "name": info.name,
            "module": info.module,
            "source": info.source,
            "distribution": info.distribution,
            "version": info.version,
            "status": "loaded",
            "error": None,
            "import_seconds": info.import_seconds,
            "imported_torch": info.imported_torch,
        }
        for info in manager.loaded
    ] + [
        {
            "name": f.info.name,
            "module": f.info.module,
            "source": f.info.source,
            "distribution": f.info.distribution,
            "version": f.info.version,
            "status": f"failed to {f.stage}",
            "error": f.error,
            "import_seconds": None,
            "imported_torch": False,
        }
        for f in manager.failed
    ]
    components = {
        kind: [
            {
                "name": entry.name,
                "plugin": entry.plugin.name,
                "distribution": entry.plugin.distribution,
                "version": entry.plugin.version,
                "description": entry.description,
                "params": _params_schema(entry),
            }
            for entry in registry
        ]
        for kind, registry in manager.registries.items()
    }
    if args.json:
        print(json.dumps({"plugins": plugins, "components": components}, indent=2))
        return 0
    print(
        format_table(
            ["plugin", "source", "distribution", "status", "import (s)"],
            [
                [
                    p["name"],
                    p["source"],
                    f"{p['distribution'] or '-'} {p['version'] or ''}".strip(),
                    p["status"],
                    "-" if p["import_seconds"] is None else f"{p['import_seconds']:.2f}",
                ]
                for p in plugins
            ],
        )
    )
    for failure in manager.failed:
        print(f"  {failure.info.name}: {failure.error}")
    for info in manager.loaded:
        if info.import_seconds is not None and info.import_seconds >= SLOW_IMPORT_SECONDS:
            why = " because it imports torch at module level" if info.imported_torch else ""
            print(
                f"  {info.name}: importing it takes {info.import_seconds:.1f} s{why}, on every command; "
                "import heavy modules inside the component's factory instead"
            )
    print()
    rows = [
        [kind, c["name"], c["plugin"], c["description"]] for kind, items in components.items() for c in items
    ]
    print(format_table(["kind", "name", "plugin", "description"], rows))
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from toolkit.spec import spec_json_schema

    if args.output:
        check_output_file(args.output, "-o", example="spec.schema.json")
    text = json.dumps(spec_json_schema(args.manager), indent=2)
    if args.output:
        from pathlib import Path

        Path(args.output).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from toolkit.spec import load_spec
    from toolkit.spec.load import declared_input_multiple

    if args.print_spec:  # what validation sees; the summary follows as a YAML comment
        from toolkit.spec import merged_spec_text

        print(merged_spec_text(args.spec, args.overrides), end="")
    spec = load_spec(args.spec, args.overrides, plugins=args.manager)
    model = spec.model
    backbone = args.manager.registry("backbone").get(model.backbone.type)
    if backbone.static_input_multiple(model.backbone) is None:  # not declared: build to read it
        from toolkit.build import build_model

        multiple = build_model(spec, plugins=args.manager).input_multiple
    else:
        multiple = declared_input_multiple(spec, args.manager)[0]  # type: ignore[index]
    height, width = model.input_size
    print(
        f"{'# ' if args.print_spec else ''}{args.spec}: valid ({model.backbone.type} + {model.head.type}, "
        f"{_count(model.num_classes, 'class', 'classes')}, input {height}x{width}, multiple of {multiple})"
    )
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from toolkit.build import build_model
    from toolkit.spec import load_spec
    from toolkit.summary import format_model_summary, summarize

    spec = load_spec(args.spec, args.overrides, plugins=args.manager)
    model = build_model(spec, plugins=args.manager)
    parts = summarize(model, spec.model.backbone.type, spec.model.head.type)
    print(f"{args.spec}: {model.task.name} model, {_count(len(model.class_names), 'class', 'classes')}")
    print(format_model_summary(parts, spec.model.input_size))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from toolkit.engine.run_dir import check_run_dir, is_main_process

    out = Path(args.out) if args.out else None
    if is_main_process():  # before anything is loaded; the trainer checks again and locks the folder
        check_run_dir(out or Path("runs") / Path(args.spec).stem, resume=args.resume, exist_ok=args.exist_ok)
    from toolkit.engine.report import format_run_summary
    from toolkit.engine.trainer import train
    from toolkit.spec import load_spec

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


def _cmd_eval(args: argparse.Namespace) -> int:
    from toolkit.errors import ToolkitError
    from toolkit.loading import is_checkpoint
    from toolkit.spec import load_spec

    out = check_output_dir(args.out, "--out") if args.out else None
    if out is not None:  # the task's plots are PNGs whose names it chooses: no PNG of the user's there
        theirs = [p.name for p in out.glob("*.png")] if out.is_dir() else []
        check_no_overwrite(out, ["metrics.json", *theirs], "--out")
    if not is_checkpoint(args.spec):  # the user's mistakes before torch is imported
        if args.checkpoint is None:
            raise ToolkitError(
                f"toolkit eval {args.spec}: which weights? pass --checkpoint runs/.../best.pt, or give the "
                "checkpoint alone (toolkit eval runs/.../best.pt) to use the spec it carries"
            )
        load_spec(args.spec, args.overrides, plugins=args.manager)
    from toolkit.engine.evaluation_run import evaluate_model  # torch: after the user's mistakes
    from toolkit.engine.report import format_metrics
    from toolkit.loading import resolve_target

    loaded = resolve_target(args.spec, args.checkpoint, args.overrides, plugins=args.manager, needs_data=True)
    metrics, names = evaluate_model(
        loaded.model,
        loaded.spec,
        split=args.split,
        out_dir=out,
        plugins=args.manager,
        show_progress=not args.no_progress,
    )
    if args.json:
        print(strict_json.dumps(metrics))
    else:
        print(format_metrics(metrics, names))
    if out is not None:
        (out / "metrics.json").write_text(strict_json.dumps(metrics) + "\n")
        record_written(out, ["metrics.json", *(p.name for p in out.glob("*.png"))])
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    config = Path(args.config) if args.config else None
    if args.weights and not Path(args.weights).is_file():
        from toolkit.errors import ToolkitError

        raise ToolkitError(f"--weights {args.weights!r} not found; pass a weights file or leave it out")
    from toolkit.engine.demo import run_detection_demo

    if args.finetune:
        from toolkit.engine.finetune_demo import run_finetune_demo

        weights = Path(args.weights) if args.weights else None
        run_finetune_demo(
            Path(args.out),
            plugins=args.manager,
            weights=weights,
            config=config,
            overrides=args.overrides,
            seeds=args.seeds,
        )
    else:
        run_detection_demo(Path(args.out), plugins=args.manager, config=config, overrides=args.overrides)
    return 0


def _cmd_attack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from toolkit.attacks.sweep import parse_sweep
    from toolkit.errors import ToolkitError
    from toolkit.loading import is_checkpoint

    target = Path(args.checkpoint or args.target)
    name = f"{target.parent.name}_{target.stem}" if is_checkpoint(target) else target.stem
    out = Path(args.out) if args.out else Path("runs") / "attack" / name
    check_output_dir(out, "--out")
    check_no_overwrite(out, list(ATTACK_FILES), "--out")
    if args.onnx and not Path(args.onnx).is_file():
        raise ToolkitError(f"--onnx {args.onnx!r} not found; export one with 'toolkit export'")
    if args.sweep:
        parse_sweep(args.sweep)  # a typo fails before torch is imported

    from toolkit.attacks.command import print_report, run_attack_command
    from toolkit.loading import resolve_target

    loaded = resolve_target(args.target, args.checkpoint, args.overrides, plugins=args.manager)
    model = loaded.model
    report = run_attack_command(
        loaded.spec,
        model,
        out,
        plugins=args.manager,
        sweep=args.sweep,
        onnx_path=Path(args.onnx) if args.onnx else None,
        show_progress=not args.no_progress,
    )
    record_written(out, list(ATTACK_FILES))
    print_report(report, model)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from toolkit.export.flow import run_export

    if args.output:
        check_output_file(args.output, "-o", example="model.onnx")
    for line in run_export(
        args.target,
        plugins=args.manager,
        checkpoint=args.checkpoint,
        overrides=args.overrides,
        output=args.output,
        opset=args.opset,
        dynamic=args.dynamic,
        decode=args.decode,
        fp16=args.fp16,
        int8=args.int8,
        verify=args.verify,
    ):
        print(line)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from toolkit.predict_files import run_predict
    from toolkit.predict_options import check_batch_size, check_score_threshold

    check_batch_size(args.batch, option="--batch")
    check_score_threshold(args.threshold, option="--threshold")
    if args.out:
        check_output_dir(args.out, "--out")
    lines, failed = run_predict(
        args.model,
        args.sources,
        checkpoint=args.checkpoint,
        plugins=args.manager,
        out_dir=args.out,
        score_threshold=args.threshold,
        batch_size=args.batch,
        device=args.device,
        provider=args.provider,
        as_json=args.json,
        coco_gt=args.coco_gt,
    )
    for line in lines:
        print(line)
    return EXIT_USER_ERROR if failed else 0


def _cmd_env(args: argparse.Namespace) -> int:
    from toolkit.env_report import environment_lines

    for line in environment_lines():
        print(line)
    return 0


def _cmd_data_export(args: argparse.Namespace) -> int:
    from toolkit.build import build_dataset
    from toolkit.data import writers
    from toolkit.spec import load_spec

    check_output_dir(args.out, "output folder")
    spec = load_spec(args.spec, args.overrides, plugins=args.manager)
    dataset = build_dataset(spec, args.split, plugins=args.manager)
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


def _cmd_data_preview(args: argparse.Namespace) -> int:
    from toolkit.spec import load_spec

    if args.count < 1:
        from toolkit.errors import ToolkitError

        raise ToolkitError(f"-n must be at least 1, got {args.count}")
    check_output_file(args.output, "-o", example="preview.png")
    spec = load_spec(args.spec, args.overrides, plugins=args.manager)
    from toolkit.data.preview import preview_grid, write_preview

    grid = preview_grid(spec, split=args.split, count=args.count, plugins=args.manager)
    path = write_preview(grid, args.output)
    print(f"wrote {path}")
    return 0


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from toolkit.build import build_dataset
    from toolkit.data.stats import compute_stats, plot_stats
    from toolkit.spec import load_spec

    if args.output:
        check_output_file(args.output, "-o", example="stats.png")
    spec = load_spec(args.spec, args.overrides, plugins=args.manager)
    stats = compute_stats(build_dataset(spec, args.split, plugins=args.manager))
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
    else:
        print(f"data.{args.split}: {stats.images} images")
        print(stats.table())
    if args.output:
        print(f"wrote {plot_stats(stats, args.output)}", file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
