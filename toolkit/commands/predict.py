"""`toolkit predict MODEL SOURCES...`: a checkpoint, a spec + checkpoint or an exported ONNX file on image
files, folders or glob patterns -> per-image results, JSON files and drawings.

Every model kind goes through the same `predict` (the torch model's `ToolkitModel.predict`, or
`OnnxModel.predict`, which shares its pre- and post-processing). An image that cannot be read is
reported on one line, counted, and the others go on.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolkit.build import Builder
from toolkit.checkpoints import resolve_target
from toolkit.contracts import Predictor, WritesResultFiles
from toolkit.data.categories import CocoIds
from toolkit.data.images import read_image
from toolkit.errors import EXIT_USER_ERROR, BadSampleError, ToolkitError
from toolkit.outputs import check_no_overwrite, check_output_dir, record_written
from toolkit.predict_options import check_batch_size, check_score_threshold
from toolkit.spec import Spec
from toolkit.tiling import TILE_FLAGS, resolve_tiling, spec_tiling

#: what a folder is searched for (any case)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
#: the JSON file `--out` receives for every model (beside one drawn PNG per image, and the task's
#: own files: `WritesResultFiles`)
RESULT_FILES = ("predictions.json",)
SPEC_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
#: images per batch when --batch is not given
DEFAULT_BATCH = 8
#: the pixel limit of an image predicted in tiles (16384 x 16384; the default is PIL's, ~89 Mpx)
TILED_MAX_PIXELS = 16384 * 16384


def jsonable(value: Any) -> Any:
    """Tensors, numpy values and containers of them as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def describe(result: Mapping[str, Any], limit: int = 5) -> str:
    """One line per result: its scalar fields, and the length of its per-object fields."""
    parts = []
    for key, value in jsonable(result).items():
        if isinstance(value, list):
            shown = value[:limit] if key == "class_names" else None
            parts.append(
                f"{key}: {shown}{' ...' if len(value) > limit else ''}" if shown else f"{key}: {len(value)}"
            )
        elif isinstance(value, float):
            parts.append(f"{key}: {value:.4g}")
        else:
            parts.append(f"{key}: {value}")
    return ", ".join(parts)


# -- inputs -------------------------------------------------------------------------------------
def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def find_images(sources: Sequence[str]) -> list[Path]:
    """The inputs `sources` name, in order, each once: a file as given (read errors are reported per
    file), a folder's images found recursively (sorted), a glob pattern's matches (sorted,
    `**` recursive; folders among them searched like folders). A path that does not exist is kept
    (reported as not found) unless nothing at all is found: then a ToolkitError names the sources."""
    found: list[Path] = []

    def folder(path: Path) -> list[Path]:
        return sorted(p for p in path.rglob("*") if is_image_file(p))

    for source in sources:
        path = Path(source)
        if path.is_dir():
            found += folder(path)
        elif path.is_file() or not glob.has_magic(source):
            found.append(path)
        else:
            for match in sorted(glob.glob(source, recursive=True)):
                matched = Path(match)
                found += folder(matched) if matched.is_dir() else [matched] if matched.is_file() else []
    unique = list(dict.fromkeys(found))
    if not any(path.is_file() for path in unique):
        raise ToolkitError(
            f"no images found in {', '.join(repr(s) for s in sources)}: name image files, folders "
            f"(searched recursively for {', '.join(sorted(IMAGE_EXTENSIONS))}) or glob patterns such as "
            "'photos/**/*.jpg'"
        )
    return unique


# -- models -------------------------------------------------------------------------------------
def load_predictor(
    model: str,
    builder: Builder,
    *,
    checkpoint: str | None,
    device: str = "cpu",
    provider: str | None = None,
) -> tuple[Predictor, Spec | Mapping[str, Any]]:
    """`model` by its suffix: `.onnx` -> `OnnxModel` (onnxruntime, `provider`); `.yaml/.yml/.json` -> the
    spec's model with the weights of `checkpoint`; anything else -> a run's checkpoint (it carries its
    spec). Torch models go to `device`. Returns the model and the spec it carries (an ONNX file's as a
    mapping)."""
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        if checkpoint is not None:
            raise ToolkitError(
                f"{model!r} is an ONNX file: it carries its weights, so --checkpoint does not apply "
                "(--checkpoint goes with a spec file)"
            )
        from toolkit.export.runtime import OnnxModel

        onnx_model = OnnxModel(path, builder=builder, provider=provider, device_id=_cuda_index(device))
        return onnx_model, onnx_model.info.spec
    is_spec = suffix in SPEC_SUFFIXES
    if is_spec and checkpoint is None:
        raise ToolkitError(
            f"{model!r} is a spec file: give its weights with --checkpoint CKPT (or pass the run's "
            "checkpoint itself, which carries its spec)"
        )
    if not is_spec and checkpoint is not None:
        raise ToolkitError(
            f"{model!r} is a checkpoint: it carries its spec and weights, so --checkpoint does not apply "
            "(--checkpoint goes with a spec file)"
        )
    if provider not in (None, "auto"):
        raise ToolkitError(
            f"--provider {provider} applies to ONNX files; {model!r} runs in torch (use --device)"
        )
    from toolkit.engine.distributed import resolve_device

    torch_device = resolve_device(device)
    loaded = resolve_target(path, checkpoint, builder=builder, as_checkpoint=not is_spec)
    return loaded.model.to(torch_device), loaded.spec


def _cuda_index(device: str) -> int:
    """N of "cuda:N" (0 otherwise): the GPU an ONNX session uses."""
    name, _, index = str(device).partition(":")
    return int(index) if name == "cuda" and index.isdigit() else 0


# -- outputs ------------------------------------------------------------------------------------
def drawn_names(paths: Sequence[Path]) -> dict[Path, str]:
    """The PNG each input is drawn into: its stem, made unique in input order (`a.png`, `a_1.png`)."""
    taken: set[str] = set(Path(name).stem for name in RESULT_FILES)
    return {path: f"{unique_name(path.stem, taken)}.png" for path in paths}


def unique_name(stem: str, taken: set[str]) -> str:
    """`stem`, or `stem_1`, `stem_2`, ... when taken; the name is added to `taken`."""
    name, number = stem, 0
    while name in taken:
        number += 1
        name = f"{stem}_{number}"
    taken.add(name)
    return name


def _progress(total: int) -> Any:
    """A tqdm bar on stderr when stderr is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc="predicting", unit="image", file=sys.stderr, dynamic_ncols=True)


def run_predict(
    model: str,
    sources: list[str],
    builder: Builder,
    *,
    checkpoint: str | None,
    out_dir: str | None,
    score_threshold: float,
    batch_size: int | None,
    device: str,
    provider: str | None,
    as_json: bool,
    coco_gt: str | None = None,
    tile_flags: Mapping[str, Any] | None = None,
    no_tile: bool = False,
) -> tuple[list[str], int]:
    """Predict every image `sources` name; returns (lines to print, number of inputs that failed).

    Lines: one per input (`PATH: result` or `PATH: cannot read: reason`) and a summary, or with
    `as_json` the records as one JSON text (then the failures go to stderr, so stdout stays JSON).
    With `out_dir`: predictions.json (one record `{"image": path, **result}` per predicted image),
    the task's own result files (`WritesResultFiles`; detection: results_coco.json) and one drawn PNG
    per image, named after its stem. Nothing is written over an input or over a file there that the
    toolkit did not write (checked before the model is loaded; the task's files once it is). With
    `coco_gt` (a COCO annotation file), the records carry that file's image and category ids, so
    results_coco.json scores against it as it is. Tiling (`toolkit.tiling`): the model's spec's
    `predict.tile` under `tile_flags` (the TILE_FLAGS of the command line) and `no_tile`; tiled
    images are read one at a time, up to TILED_MAX_PIXELS, and `batch_size` counts tiles.
    """
    import torch

    from toolkit.data.preview import write_preview

    if batch_size is not None:
        check_batch_size(batch_size, option="--batch")
    score_threshold = check_score_threshold(score_threshold, option="--threshold")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and out.exists() and not out.is_dir():
        raise ToolkitError(f"--out {str(out)!r} is a file; name a folder")
    paths = find_images(sources)
    gt = CocoIds(coco_gt) if coco_gt is not None else None
    image_ids = gt.image_ids(paths) if gt is not None else None
    drawn = drawn_names(paths)
    inputs = {p.resolve() for p in paths if p.exists()} if out is not None else set()
    if out is not None:
        planned = [*RESULT_FILES, *drawn.values()]
        check_no_overwrite(out, planned, "--out", inputs=inputs)
    predictor, model_spec = load_predictor(
        model, builder, checkpoint=checkpoint, device=device, provider=provider
    )
    tiling = resolve_tiling(spec_tiling(model_spec), tile_flags or {}, batch=batch_size, off=no_tile)
    images_per_batch = 1 if tiling is not None else batch_size or DEFAULT_BATCH
    max_pixels = TILED_MAX_PIXELS if tiling is not None else None
    category_ids = gt.category_ids(predictor.class_names) if gt is not None else predictor.category_ids
    task_files = predictor.task.result_file_names if isinstance(predictor.task, WritesResultFiles) else ()
    if out is not None:
        check_no_overwrite(out, list(task_files), "--out", inputs=inputs)
        planned += task_files
        out.mkdir(parents=True, exist_ok=True)
        record_written(out, planned)  # before writing: a run killed halfway may be run again
    records: list[dict[str, Any]] = []
    ids_of_records: list[int] = []
    lines: list[str] = []
    failed = 0
    bar = _progress(len(paths))
    try:
        for start in range(0, len(paths), images_per_batch):
            readable: list[tuple[int, Path, torch.Tensor]] = []
            for position in range(start, min(start + images_per_batch, len(paths))):
                path = paths[position]
                try:
                    readable.append((position, path, read_image(path, max_pixels=max_pixels)))
                except (BadSampleError, ToolkitError) as exc:
                    failed += 1
                    reason = exc.reason if isinstance(exc, BadSampleError) else str(exc)
                    message = f"{path}: cannot read: {reason}"
                    if as_json:
                        (bar.write if bar is not None else print)(message, file=sys.stderr)
                    else:
                        lines.append(message)
            if readable:
                images = [image for _, _, image in readable]
                results = predictor.predict(
                    images, score_threshold=score_threshold, batch_size=images_per_batch, tile=tiling
                )
                for (position, path, image), result in zip(readable, results, strict=True):
                    records.append({"image": str(path), **jsonable(result)})
                    ids_of_records.append(image_ids[position] if image_ids is not None else position)
                    if not as_json:
                        lines.append(f"{path}: {describe(result)}")
                    if out is not None:
                        picture = predictor.task.draw(image, result, predictor.class_names)
                        write_preview(picture.to(torch.uint8), out / drawn[path])
            if bar is not None:
                bar.update(min(images_per_batch, len(paths) - start))
    finally:
        if bar is not None:
            bar.close()
    written: list[str] = []
    if out is not None:
        (out / "predictions.json").write_text(json.dumps(records, indent=2), encoding="utf-8")
        written.append("predictions.json")
        if isinstance(predictor.task, WritesResultFiles):
            files = predictor.task.result_files(records, category_ids, ids_of_records)
            for name in task_files:
                (out / name).write_text(json.dumps(files[name]), encoding="utf-8")
                written.append(name)
    if as_json:
        return [json.dumps(records, indent=2)], failed
    summary = f"{len(records)} images predicted, {failed} failed"
    if out is not None:
        summary += f"; wrote {', '.join(written)} and {len(records)} drawn image(s) to {out}"
    lines.append(summary)
    return lines, failed


def run(args: argparse.Namespace) -> int:
    """`toolkit predict MODEL SOURCE...`: one line per image (or JSON); exit 2 when one failed."""

    if args.batch is not None:
        check_batch_size(args.batch, option="--batch")
    check_score_threshold(args.threshold, option="--threshold")
    if args.out:
        check_output_dir(args.out, "--out")
    lines, failed = run_predict(
        args.model,
        args.sources,
        Builder(args.manager),
        checkpoint=args.checkpoint,
        out_dir=args.out,
        score_threshold=args.threshold,
        batch_size=args.batch,
        device=args.device,
        provider=args.provider,
        as_json=args.json,
        coco_gt=args.coco_gt,
        tile_flags={flag: getattr(args, flag) for flag in TILE_FLAGS},
        no_tile=args.no_tile,
    )
    for line in lines:
        print(line)
    return EXIT_USER_ERROR if failed else 0
