"""`toolkit predict CKPT IMAGE...`: a trained checkpoint on image files -> results, JSON and drawings."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.plugins import PluginManager


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


def predict_files(
    checkpoint: str | Path,
    images: Sequence[str],
    *,
    plugins: PluginManager,
    out_dir: str | Path | None = None,
    score_threshold: float = 0.3,
    device: str = "cpu",
    as_json: bool = False,
) -> Iterator[str]:
    """Predict every image file; yield the lines to print. With `out_dir`: predictions.json and
    IMAGE_STEM.png (the task's drawing) per image."""
    import torch

    from toolkit.data.images import read_image
    from toolkit.data.preview import write_preview
    from toolkit.engine.distributed import resolve_device
    from toolkit.loading import load_model

    missing = [path for path in images if not Path(path).is_file()]
    if missing:
        raise ToolkitError(f"image file(s) not found: {', '.join(missing)}; check the paths")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and out.exists() and not out.is_dir():
        raise ToolkitError(f"--out {str(out)!r} is a file; name a folder")
    model = load_model(checkpoint, device=resolve_device(device), plugins=plugins)
    pixels = [read_image(path) for path in images]
    results = model.predict(pixels, score_threshold=score_threshold)
    records = [{"image": str(path), **jsonable(result)} for path, result in zip(images, results, strict=True)]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "predictions.json").write_text(json.dumps(records, indent=2), encoding="utf-8")
        for path, image, result in zip(images, pixels, results, strict=True):
            drawn = model.task.draw(image, result, model.class_names)
            write_preview(drawn.to(torch.uint8), out / f"{Path(path).stem}.png")
    if as_json:
        yield json.dumps(records, indent=2)
        return
    for path, result in zip(images, results, strict=True):
        yield f"{path}: {describe(result)}"
    if out is not None:
        yield f"wrote {out / 'predictions.json'} and {len(images)} drawn image(s) to {out}"
