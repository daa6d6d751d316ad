"""`toolkit export`: resolve the model (checkpoint or spec), refuse what cannot work before any work,
export, verify, convert to fp16 or int8, report. Also what the spec's `export:` section drives."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.build import Builder
from toolkit.checkpoints import resolve_target
from toolkit.data.categories import dataset_category_ids
from toolkit.errors import ToolkitError, validation_problems
from toolkit.export.metadata import read_file_info
from toolkit.outputs import check_output_file
from toolkit.spec import ExportSpec, Spec

#: what a CLI flag may set in the export section (None: not given)
OPTION_FIELDS = ("output", "opset", "dynamic", "decode", "fp16", "int8", "verify")


def export_options(spec: Spec | None, **given: Any) -> ExportSpec:
    """The spec's `export:` section with the command line's options on top, validated together."""
    base = spec.export.model_dump() if spec is not None and spec.export is not None else {}
    base.update({key: value for key, value in given.items() if value is not None})
    try:
        return ExportSpec.model_validate(base)
    except ValueError as exc:  # pydantic's ValidationError
        raise ToolkitError(f"export options: {validation_problems(exc)}") from None


def _load(
    target: str, checkpoint: str | None, overrides: Sequence[str], builder: Builder
) -> tuple[Any, Spec, Path]:
    """(model with weights, the spec, the default output path)."""

    loaded = resolve_target(target, checkpoint, overrides, builder=builder)
    return loaded.model, loaded.spec, loaded.path.with_suffix(".onnx")


def _dataset(spec: Spec, builder: Builder) -> Any | None:
    """The spec's validation data (else its training data), or None without a data section."""
    if spec.data is None:
        return None
    return builder.dataset(spec, "val" if spec.data.val is not None else "train")


def _check_output(output: Path) -> None:
    if output.is_dir():
        raise ToolkitError(f"output {str(output)!r} is a folder; name the .onnx file (-o model.onnx)")
    parent = output.parent if str(output.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise ToolkitError(f"cannot write to {str(parent)!r}; choose another place with -o")
    if output.suffix != ".onnx":
        raise ToolkitError(f"output {str(output)!r} should end in .onnx")
    if output.is_symlink() or (output.exists() and not output.is_file()):
        raise ToolkitError(f"output {str(output)!r} is not a regular file; choose another place with -o")
    if output.exists() and not _is_toolkit_export(output):
        raise ToolkitError(
            f"output {str(output)!r} exists and is not a toolkit export: it is not replaced; choose another "
            "name with -o, or move the file away"
        )


def _is_toolkit_export(path: Path) -> bool:

    try:
        read_file_info(path)
    except ToolkitError:
        return False
    return True


def run_export(
    target: str,
    builder: Builder,
    *,
    checkpoint: str | None = None,
    overrides: Sequence[str] = (),
    **given: Any,
) -> list[str]:
    """Export as the spec's `export:` section and the command line say; returns the report lines.

    The file is written and verified in a temporary folder beside the output and moved into place
    only when it passed: a failed export leaves an existing output as it was. An existing output is
    replaced only when it is a toolkit export itself."""
    export_options(None, **given)  # the command line's own contradictions, before torch is imported
    model, spec, default_output = _load(target, checkpoint, overrides, builder)
    options = export_options(spec, **given)
    output = Path(options.output) if options.output else default_output
    _check_output(output)
    replaced = output.exists()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent or "."))
    try:
        lines = _export_into(model, spec, builder, options, staging / output.name)
        for produced in sorted(staging.iterdir(), key=lambda p: p.suffix == ".onnx"):  # data first
            os.replace(produced, output.parent / produced.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    lines[0] = lines[0].replace(str(staging / output.name), str(output))
    size = output.stat().st_size / 1e6
    note = "" if options.verify else " (not verified: --no-verify)"
    lines.append(f"\n{output}: {size:.1f} MB{note}" + ("; replaced the earlier export" if replaced else ""))
    return lines


def _export_into(model: Any, spec: Spec, builder: Builder, options: ExportSpec, output: Path) -> list[str]:
    """Export, verify and convert into `output` (a staging path); returns the report lines."""
    from toolkit.export.onnx_export import export_onnx
    from toolkit.export.verify import verify_export

    dataset = _dataset(spec, builder)
    if options.int8 and dataset is None:
        raise ToolkitError("--int8 calibrates on the spec's data, and this spec has no data section")
    samples = [dataset[i][0] for i in range(min(3, len(dataset)))] if dataset is not None else []
    category_ids = model.category_ids
    if category_ids is None and dataset is not None:
        category_ids = dataset_category_ids(dataset)
    fp32 = output if not (options.fp16 or options.int8) else output.with_name(f"fp32.{output.name}")
    exported = export_onnx(
        model,
        fp32,
        spec=spec.model_dump(mode="json"),
        category_ids=category_ids,
        opset=options.opset,
        dynamic=options.dynamic,
        decode=options.decode,
    )
    outputs = ", ".join(exported.outputs)
    lines = [f"exported {model.task.name} model to {output} in {exported.seconds:.1f} s; outputs: {outputs}"]
    dynamic_hw = options.dynamic == "batch,hw"
    try:
        if options.verify:
            check = verify_export(
                model,
                fp32,
                names=exported.outputs,
                decode=options.decode,
                dynamic_hw=dynamic_hw,
                samples=samples,
            )
            lines += ["", "fp32 against torch:", check.table()]
            if not check.passed:
                raise ToolkitError(
                    "\n".join([*lines, "", "verification failed: the export does not match the torch model"])
                )
        if options.fp16:
            lines += _to_fp16(model, fp32, output, exported.outputs, options, dynamic_hw, samples)
        if options.int8:
            lines += _to_int8(fp32, output, dataset, spec, builder, options)
    finally:
        if fp32 != output:
            fp32.unlink(missing_ok=True)
            fp32.with_name(fp32.name + ".data").unlink(missing_ok=True)
    return lines


def _to_fp16(
    model: Any,
    fp32: Path,
    output: Path,
    names: list[str],
    options: ExportSpec,
    dynamic_hw: bool,
    samples: list,
) -> list[str]:
    from toolkit.export.precision import FP16_SCORE_TOLERANCE, convert_fp16
    from toolkit.export.verify import verify_export

    convert_fp16(fp32, output)
    if not options.verify:
        return ["converted to fp16"]
    check = verify_export(
        model, output, names=names, decode=options.decode, dynamic_hw=dynamic_hw, samples=samples,
        tolerance=FP16_SCORE_TOLERANCE,
    )  # fmt: skip
    lines = ["", "fp16 against torch fp32:", check.table()]
    if not check.passed:
        raise ToolkitError(
            "\n".join([*lines, "", "verification failed: the fp16 export is out of tolerance"])
        )
    return lines


def _to_int8(
    fp32: Path, output: Path, dataset: Any, spec: Spec, builder: Builder, options: ExportSpec
) -> list[str]:
    from toolkit.export.precision import quantize_int8
    from toolkit.export.verify import compare_metrics
    from toolkit.inference import preprocess

    count = min(options.calibration_images, len(dataset))
    images = [dataset[i][0] for i in range(count)]
    batches = [preprocess(images[i : i + 8], spec.model.input_size)[0].numpy() for i in range(0, count, 8)]
    quantize_int8(fp32, output, batches)
    if not options.verify:
        return [f"quantized to int8 (calibrated on {count} images)"]
    headline, fp32_value, int8_value = compare_metrics(
        fp32, output, dataset, builder, limit=options.metric_images
    )
    scored = min(options.metric_images, len(dataset))
    return [
        f"quantized to int8, calibrated on {count} images",
        f"{headline} on {scored} images of the data: fp32 {fp32_value:.4f}, int8 {int8_value:.4f} "
        f"(change {int8_value - fp32_value:+.4f})",
    ]


def run(args: argparse.Namespace) -> int:
    """`toolkit export SPEC --checkpoint CKPT | CKPT`: the file and the verification report."""
    if args.output:
        check_output_file(args.output, "-o", example="model.onnx")
    for line in run_export(
        args.target,
        Builder(args.manager),
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
