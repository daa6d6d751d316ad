"""Command line: parse arguments, run the command's module (`toolkit.commands`), map user errors to
exit code 2.

Up front it imports argparse and the plugin manager (pluggy, pydantic); a command's module only
when it runs: `toolkit --help` never imports torch (`benchmarks/cli_startup.py` measures it).
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from toolkit import __version__, plugins
from toolkit.errors import EXIT_USER_ERROR, ToolkitError, debug_enabled

#: a shell's code for a command its pipe's reader closed (128 + SIGPIPE)
EXIT_BROKEN_PIPE = 141


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


def add_tile_options(parser: argparse.ArgumentParser) -> None:
    """Sliced inference flags of `predict` and `eval` (docs/tiling.md); they override predict.tile."""
    group = parser.add_argument_group("sliced inference (large images, small objects)")
    group.add_argument("--tile", type=int, metavar="SIZE", help="cut each image into SIZE x SIZE tiles")
    group.add_argument(
        "--overlap", type=float, metavar="F", help="fraction of a tile shared with a neighbour (0.2)"
    )
    group.add_argument(
        "--full-image", action="store_true", default=None, help="also detect in the whole image, merged in"
    )
    group.add_argument("--merge", choices=["nms", "fusion"], help="how overlapping boxes merge (nms)")
    group.add_argument("--merge-iou", type=float, metavar="F", help="overlap at which boxes merge (0.5)")
    group.add_argument("--no-tile", action="store_true", help="ignore the spec's predict.tile")


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="toolkit",
        description="Plugin-based detection and classification: every experiment is a spec file.",
    )
    parser.add_argument("--version", action="version", version=f"toolkit {__version__}")
    _add_plugin_option(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: str, help_text: str) -> argparse.ArgumentParser:
        """A subcommand run by `handler`, "module:function" of `toolkit.commands`."""
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _add_plugin_option(sub, top_level=False)
        sub.set_defaults(handler=handler)
        return sub

    plugins = command("plugins", "info:plugins", "list plugins and the components they register")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    schema = command(
        "schema", "info:schema", "print the JSON Schema of spec files (installed plugins included)"
    )
    schema.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")

    for name, handler, help_text in (
        ("validate", "info:validate", "check a spec file against the installed plugins"),
        ("build", "info:build", "build the spec's model and print parameters and output shapes"),
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
    train = command("train", "train:run", "train the spec's model on its data (torchrun for several GPUs)")
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

    evaluate = command("eval", "evaluate:run", "evaluate a checkpoint on data.val (COCO mAP or accuracy)")
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
    evaluate.add_argument("--batch", type=int, metavar="N", help="with --tile: tiles per batch (default 8)")
    add_tile_options(evaluate)

    export = command(
        "export", "export:run", "export a model to ONNX (decoding in the graph), verified against torch"
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

    predict = command("predict", "predict:run", "predict images with an ONNX file or a checkpoint")
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
    predict.add_argument(
        "--batch", type=int, metavar="N", help="images per batch, or tiles per batch with --tile (default 8)"
    )
    predict.add_argument("--device", default="cpu", help="checkpoints: cpu (default) or cuda[:N]")
    predict.add_argument("--provider", help="ONNX files: auto (default), tensorrt, cuda or cpu")
    predict.add_argument("--json", action="store_true", help="print the results as JSON")
    predict.add_argument(
        "--coco-gt", metavar="FILE",
        help="the images' COCO annotation file: results_coco.json takes its image and category ids",
    )  # fmt: skip
    add_tile_options(predict)

    attack = command(
        "attack", "attack:run", "attack a model on its data: clean vs adversarial metrics, examples, sweeps"
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

    command("env", "info:env", "versions of torch, CUDA, onnxruntime and its providers, GPUs")

    demo = command("demo", "demo:run", "the main job offline: train, evaluate and draw CenterNet on shapes")
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

    def data_command(name: str, handler: str, help_text: str) -> Any:
        sub = data_commands.add_parser(name, help=help_text, description=help_text)
        _add_plugin_option(sub, top_level=False)
        sub.set_defaults(handler=handler)
        sub.add_argument("spec", metavar="SPEC", help="spec file with a data section")
        return sub

    export = data_command(
        "export", "data:export", "write data.<split> to disk as COCO, VOC, YOLO or class folders"
    )
    export.add_argument("out", metavar="DIR", help="output folder")
    export.add_argument(
        "--format",
        choices=["coco", "voc", "yolo", "folder"],
        default="coco",
        help="coco (default), voc, yolo (Ultralytics: images/, labels/, data.yaml) or folder",
    )
    preview = data_command("preview", "data:preview", "draw augmented samples with boxes into a PNG grid")
    preview.add_argument("-n", "--count", type=int, default=16, help="number of samples (default 16)")
    preview.add_argument("-o", "--output", default="preview.png", help="PNG file (default preview.png)")
    stats = data_command("stats", "data:stats", "images and objects per class, box sizes (table + PNG)")
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

    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            # the one default plugin manager of this process; handlers pass it on explicitly
            args.manager = plugins.configure(modules=[*args.plugins, *args.command_plugins])
            code = int(_handler(args.handler)(args))
            sys.stdout.flush()  # a reader that left shows here, not in the interpreter's last flush
            return code
        except ToolkitError as exc:
            return _report(exc, str(exc), exc.exit_code, debug=debug_enabled())
        except BrokenPipeError as exc:
            if not _stdout_reader_gone():  # another pipe (a worker's, say): an error like any other
                return _report(exc, _os_error_text(exc), EXIT_USER_ERROR, debug=debug_enabled())
            _silence_stdout()  # the reader of stdout left (`toolkit plugins | head`): stop quietly
            return EXIT_BROKEN_PIPE
        except OSError as exc:  # a file or folder the system refused (full disk, permissions, ...)
            return _report(exc, _os_error_text(exc), EXIT_USER_ERROR, debug=debug_enabled())
        except KeyboardInterrupt:
            print("toolkit: interrupted", file=sys.stderr)
            return 130


def _handler(reference: str) -> Any:
    """The function "module:function" of `toolkit.commands`, its module imported now."""
    import importlib

    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(f"toolkit.commands.{module}"), function)


def _report(exc: BaseException, message: str, code: int, *, debug: bool) -> int:
    """One line on stderr; with TOOLKIT_DEBUG=1 the traceback (and its causes) first."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    print(f"toolkit: error: {message}", file=sys.stderr)
    return code


def _stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reading end is closed (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout has no descriptor
        return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


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


if __name__ == "__main__":
    sys.exit(main())
