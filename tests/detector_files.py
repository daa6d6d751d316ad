"""A tiny untrained detector as the files users hand to predict, export and attack: a checkpoint
(carrying a spec whose data is a COCO dataset with non-contiguous category ids), its ONNX export,
and the COCO dataset itself, whose boxes are the model's own confident detections so that AP is
neither 0 nor 1 without any training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from toolkit.build import build_model
from toolkit.export.onnx_export import export_onnx
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

CLASS_NAMES = ["circle", "square", "triangle"]
CATEGORY_IDS = [11, 22, 33]
INPUT = 64
MODEL = {
    "backbone": {"type": "resnet18", "pretrained": "none"},
    "head": {"type": "centernet", "neck_channels": [16, 16, 16], "head_conv": 8, "max_detections": 20},
    "input_size": [INPUT, INPUT],
    "class_names": CLASS_NAMES,
}
#: each image's best detections that become its ground truth
TRUTH_PER_IMAGE = 3


def write_images(folder: Path, count: int = 4) -> list[Path]:
    """`count` random RGB images of different sizes (PNG), named im0.png, im1.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(3)
    paths = []
    for index in range(count):
        height, width = 48 + 8 * index, 80 - 8 * index
        pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator)
        path = folder / f"im{index}.png"
        Image.fromarray(pixels.numpy()).save(path)
        paths.append(path)
    return paths


def coco_truth(model: Any, paths: list[Path]) -> dict[str, Any]:
    """A COCO document for `paths`: image ids 100, 101, ...; categories 11, 22, 33; the objects are
    each image's TRUTH_PER_IMAGE best detections of the model."""
    results = model.predict([str(p) for p in paths])
    images, annotations = [], []
    for index, (path, result) in enumerate(zip(paths, results, strict=True)):
        with Image.open(path) as image:
            width, height = image.size
        images.append({"id": 100 + index, "file_name": path.name, "width": width, "height": height})
        best = result["scores"].argsort(descending=True)[:TRUTH_PER_IMAGE]
        for (x1, y1, x2, y2), label in zip(
            result["boxes"][best].tolist(), result["labels"][best].tolist(), strict=True
        ):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 100 + index,
                    "category_id": CATEGORY_IDS[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i, "name": n} for i, n in zip(CATEGORY_IDS, CLASS_NAMES, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def build_detector_files(folder: Path, manager: PluginManager) -> dict[str, Path]:
    """Write images/, annotations.json, model.pt (no category ids recorded), model_ids.pt (ids
    recorded, as training writes them), model.onnx and spec.json under `folder`."""
    torch.manual_seed(0)
    images = folder / "images"
    paths = write_images(images)
    annotations = folder / "annotations.json"
    data = {
        "train": {"type": "coco", "images": str(images), "annotations": str(annotations)},
        "val": {"type": "coco", "images": str(images), "annotations": str(annotations)},
        "batch_size": 2,
        "num_workers": 0,
    }
    raw = {"model": MODEL, "data": data, "train": {"device": "cpu"}, "attack": {"method": {"type": "fgsm"}}}
    model = build_model(load_spec({"model": MODEL}, plugins=manager), plugins=manager).eval()
    with torch.no_grad():
        model.head.heatmap[-1].weight.mul_(30.0)  # spread the untrained detector's scores apart
        model.head.size[-1].bias.fill_(3.0)  # and give its boxes an area
        model.head.size[-1].weight.normal_(0.0, 1.0)
    truth = coco_truth(model, paths)
    assert len(truth["annotations"]) == TRUTH_PER_IMAGE * len(paths), "too few detections for a ground truth"
    annotations.write_text(json.dumps(truth))
    spec = load_spec(raw, plugins=manager).model_dump(mode="json")
    (folder / "spec.json").write_text(json.dumps(spec))
    torch.save({"model": model.state_dict(), "spec": spec}, folder / "model.pt")
    torch.save(
        {"model": model.state_dict(), "spec": spec, "category_ids": CATEGORY_IDS}, folder / "model_ids.pt"
    )
    export_onnx(model, folder / "model.onnx", spec=spec, category_ids=CATEGORY_IDS)
    return {
        "images": images,
        "annotations": annotations,
        "checkpoint": folder / "model.pt",
        "checkpoint_ids": folder / "model_ids.pt",
        "onnx": folder / "model.onnx",
        "spec": folder / "spec.json",
    }
