"""Data pipeline benchmarks, printed as JSON.

1. CenterNet target encoding, 50 objects at 512x512: the vectorized encoder against the per-object
   loop of the reference code (`encode_reference_loop`, tests/centernet_reference.py), in the same
   run. Goal: >= 5x.
2. Whole pipeline at 512 (JPEG decode + the default detection augmentation + targets) through the
   real DataLoader with 1 and with 2 workers. Goal: 2 workers >= 1.8x one worker.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def best_time(function, repeats: int, inner: int) -> float:  # type: ignore[no-untyped-def]
    """Best mean seconds per call over `repeats` rounds of `inner` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            function()
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def encoding_benchmark(num_classes: int) -> dict[str, float]:
    if str(REPO / "tests") not in sys.path:  # the loop baseline is test code (tests/centernet_reference.py)
        sys.path.insert(0, str(REPO / "tests"))
    from centernet_reference import encode_reference_loop

    from toolkit_plugins.heads.centernet_targets import CenterNetTargetEncoder

    generator = torch.Generator().manual_seed(0)
    centres = torch.rand(50, 2, generator=generator) * 512
    sizes = 8 + torch.rand(50, 2, generator=generator) * 120
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1).clamp(0, 512)
    labels = torch.randint(0, num_classes, (50,), generator=generator)
    encoder = CenterNetTargetEncoder(num_classes, 4, (512, 512), max_objects=128, min_overlap=0.7)

    def loop() -> object:
        return encode_reference_loop(
            boxes, labels, num_classes=num_classes, output_stride=4, input_size=(512, 512), max_objects=128
        )

    vectorized = best_time(lambda: encoder(boxes, labels), repeats=7, inner=50)
    baseline = best_time(loop, repeats=7, inner=20)
    return {
        "classes": num_classes,
        "vectorized_ms": round(vectorized * 1e3, 3),
        "loop_ms": round(baseline * 1e3, 3),
        "speedup": round(baseline / vectorized, 2),
    }


def write_jpeg_dataset(directory: Path, count: int) -> tuple[Path, Path]:
    """`count` shapes images (512x512) as JPEG files plus a COCO instances file."""
    from PIL import Image

    from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

    shapes = ShapesDataset(length=count, image_size=512, seed=7)
    images = directory / "images"
    images.mkdir(parents=True)
    truth = shapes.ground_truth()
    for index in range(count):
        image, _ = shapes[index]
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(images / f"{index:06d}.jpg", quality=90)
    for entry in truth["images"]:
        entry["file_name"] = f"{int(entry['id']):06d}.jpg"
    categories = [{"id": c["id"] + 1, "name": c["name"]} for c in truth["categories"]]
    annotations = [{**a, "category_id": a["category_id"] + 1} for a in truth["annotations"]]
    path = directory / "instances.json"
    path.write_text(
        json.dumps({"images": truth["images"], "annotations": annotations, "categories": categories})
    )
    return images, path


def pipeline_benchmark(count: int, passes: int) -> dict[str, float]:
    from toolkit.build import Builder, build_model
    from toolkit.data.loader import make_loader
    from toolkit.plugins import PluginManager
    from toolkit.spec import load_spec

    plugins = PluginManager()

    with tempfile.TemporaryDirectory() as temp:
        images, annotations = write_jpeg_dataset(Path(temp), count)
        spec = load_spec(
            Path(__file__).resolve().parents[1] / "configs/centernet_resnet18_shapes.yaml",
            [
                "model.input_size=512",
                f"data.train={{type: coco, images: {images}, annotations: {annotations}}}",
                "data.val=null",
                "data.batch_size=16",
            ],
            plugins=plugins,
        )
        model = build_model(spec, plugins=plugins)
        dataset = Builder(plugins).split(spec, model, "train").processed
        rates = {}
        for workers in (1, 2):
            loader = make_loader(dataset, spec.data, shuffle=True, num_workers=workers)
            for batch in loader:  # warm up: start workers, fill caches
                del batch
            start, seen = time.perf_counter(), 0
            for epoch in range(passes):
                loader.sampler.set_epoch(epoch + 1)
                seen += sum(len(batch) for batch in loader)
            rates[workers] = seen / (time.perf_counter() - start)
            del loader
    return {
        "images": count,
        "one_worker_images_per_s": round(rates[1], 1),
        "two_workers_images_per_s": round(rates[2], 1),
        "per_worker_images_per_s": round(rates[2] / 2, 1),
        "ratio_2_vs_1": round(rates[2] / rates[1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {
        "benchmark": "data_pipeline",
        "target_encoding": [encoding_benchmark(3), encoding_benchmark(80)],
        "pipeline_512": pipeline_benchmark(args.images, args.passes),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
