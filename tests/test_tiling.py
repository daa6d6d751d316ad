"""Sliced inference: the tile grid, the merge, the exact mapping back to image pixels, torch/ONNX
parity, the streamed memory bound, and `toolkit predict/eval --tile` end to end."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, run_cli_here
from torchvision.transforms.functional import to_pil_image

from toolkit.build import Builder, load_model
from toolkit.engine.trainer import train
from toolkit.errors import ToolkitError
from toolkit.export.onnx_export import export_onnx
from toolkit.export.runtime import OnnxModel
from toolkit.inference import merge_tiles, tile_batches
from toolkit.plugins import PluginManager
from toolkit.spec import TileSpec, load_spec
from toolkit.tiling import as_tiling, resolve_tiling, tile_grid, tile_origins
from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

CONFIG = REPO / "configs" / "shapes_large_tiled.yaml"
#: the tiled recipe, small: 64 px tiles of 256 px images with 8-20 px shapes, a few seconds of training
SMALL = [
    "model.input_size=64",
    "data.train.length=64",
    "data.train.image_size=128",
    "data.train.object_size=[8, 20]",
    "data.train.min_objects=4",
    "data.train.max_objects=8",
    "data.val.length=2",
    "data.val.image_size=256",
    "data.val.object_size=[8, 20]",
    "data.val.min_objects=15",
    "data.val.max_objects=25",
    "data.batch_size=4",
    "train.time_limit=null",
    "train.epochs=6",
    "predict.tile.size=64",
]


@pytest.fixture(scope="module")
def detection_task(manager: PluginManager) -> Any:
    return Builder(manager).task("detection", named_by="the tiling tests")


@pytest.fixture(scope="module")
def tiled_run(manager: PluginManager, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained tiled detector (its heatmap has peaks, not a flat prior) and its ONNX file."""
    folder = tmp_path_factory.mktemp("tiled")
    summary = train(
        load_spec(CONFIG, SMALL, plugins=manager), out_dir=folder, plugins=manager, show_progress=False
    )
    model = load_model(summary.files["best"], plugins=manager)
    spec = torch.load(summary.files["best"], map_location="cpu", weights_only=False)["spec"]
    export_onnx(model, folder / "model.onnx", spec=spec)
    return folder


def large_image(seed: int = 7, size: int = 256) -> torch.Tensor:
    return ShapesDataset(
        length=1, image_size=size, seed=seed, min_objects=20, max_objects=20, object_size=(8, 20)
    )[0][0]


# -- the grid -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("length", "tile", "overlap", "expected"),
    [
        (100, 40, 0.2, [0, 30, 60]),  # step <= 32: three windows, spread evenly, the last at the edge
        (120, 40, 0.0, [0, 40, 80]),  # no overlap asked, none needed
        (100, 40, 0.0, [0, 30, 60]),  # 100 is no multiple of 40: the windows overlap anyway
        (40, 40, 0.5, [0]),  # one tile exactly
        (25, 40, 0.2, [0]),  # smaller than a tile
    ],
)
def test_tile_origins(length: int, tile: int, overlap: float, expected: list[int]) -> None:
    origins = tile_origins(length, tile, overlap)
    assert origins == expected
    for first, second in itertools.pairwise(origins):
        assert first + tile - second >= overlap * tile  # neighbours share at least the overlap


@pytest.mark.parametrize(("height", "width"), [(300, 500), (64, 64), (50, 700), (31, 20)])
def test_tile_grid_covers_the_image_and_stays_inside(height: int, width: int) -> None:
    windows = tile_grid(height, width, (64, 64), 0.25)
    covered = torch.zeros(height, width, dtype=torch.bool)
    for x0, y0, x1, y1 in windows:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert (y1 - y0, x1 - x0) == (min(64, height), min(64, width))  # whole tiles, or the whole side
        covered[y0:y1, x0:x1] = True
    assert bool(covered.all())
    if height <= 64 and width <= 64:
        assert windows == [(0, 0, width, height)]  # an image smaller than a tile is one window


def test_tiling_options_resolve_and_refuse_bad_values() -> None:
    assert as_tiling(None) is None and as_tiling(128) == TileSpec(size=128)
    assert as_tiling({"size": 96, "merge": "nms"}).merge == "nms"
    with pytest.raises(ToolkitError, match=r"tile: size: Input should be greater than or equal to 32"):
        as_tiling(8)
    with pytest.raises(ToolkitError, match=r"tile: overlap: Input should be less than or equal to 0.9"):
        as_tiling({"size": 64, "overlap": 0.95})
    spec_tile = TileSpec(size=256, merge="nms")
    flags = {"tile": None, "overlap": 0.3, "full_image": None, "merge": None, "merge_iou": None}
    assert resolve_tiling(spec_tile, flags, batch=4) == TileSpec(size=256, merge="nms", overlap=0.3, batch=4)
    assert resolve_tiling(spec_tile, {}, off=True) is None
    with pytest.raises(ToolkitError, match=r"--overlap: tiling options, but nothing tiles; add --tile SIZE"):
        resolve_tiling(None, flags)
    with pytest.raises(ToolkitError, match=r"--no-tile turns tiling off, but --overlap was given too"):
        resolve_tiling(spec_tile, flags, off=True)


# -- the merge ------------------------------------------------------------------------------------
def part(boxes: list[list[float]], scores: list[float], labels: list[int]) -> dict[str, Any]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float64),
        "labels": torch.tensor(labels),
        "class_names": [["circle", "square"][label] for label in labels],
    }


def test_a_box_cut_by_a_tile_border_becomes_one_box(detection_task: Any) -> None:
    """Tile A (origin 0) ends at x=100 and sees the left 10 px of a square spanning x 90..130; tile B
    (origin 80) sees all of it. Fusion gives back the one whole box, with the best score."""
    left = part([[90, 10, 100, 30]], [0.9], [1])  # the cut part scored higher
    right = part([[10, 10, 50, 30], [60, 60, 70, 70]], [0.8, 0.5], [1, 0])
    fused = detection_task.merge_tiles([left, right], [(0, 0), (80, 0)], method="fusion", iou=0.5)
    assert fused["boxes"].tolist() == [[90, 10, 130, 30], [140, 60, 150, 70]]
    assert fused["scores"].tolist() == [0.9, 0.5] and fused["labels"].tolist() == [1, 0]
    assert fused["class_names"] == ["square", "circle"]
    kept = detection_task.merge_tiles([left, right], [(0, 0), (80, 0)], method="nms", iou=0.5)
    assert len(kept["boxes"]) == 3  # NMS: IoU 0.25, both parts stay (fusion is for cut objects)


def test_fusion_merges_within_a_class_and_by_the_smaller_box(detection_task: Any) -> None:
    doubled = part(
        [[0, 0, 20, 20], [1, 1, 21, 21], [0, 0, 20, 20], [40, 40, 60, 60]], [0.9, 0.8, 0.7, 0.6], [0, 0, 1, 0]
    )
    merged = detection_task.merge_tiles([doubled], [(5, 7)], method="fusion", iou=0.5)
    assert merged["boxes"].tolist() == [[5, 7, 26, 28], [5, 7, 25, 27], [45, 47, 65, 67]]  # shifted by (5, 7)
    assert merged["labels"].tolist() == [0, 1, 0]  # the other class's twin box is not merged
    empty = detection_task.merge_tiles([part([], [], [])], [(0, 0)], method="fusion", iou=0.5)
    assert empty["boxes"].shape == (0, 4) and empty["scores"].shape == (0,) and empty["class_names"] == []


# -- the mapping back, exactly --------------------------------------------------------------------
def predict_tiled(
    image: torch.Tensor, run: Any, *, task: Any, input_size: tuple[int, int], tiling: TileSpec
) -> dict[str, Any]:
    """What the models' `predict` does with `tile`, with `run` for their forward and decode."""
    parts, origins = [], []
    for batch, meta, where in tile_batches(image, input_size, tiling, task):
        parts += task.results(run(batch), meta, input_size, ["circle"], 0.0)
        origins += where
    return merge_tiles(task, parts, origins, tiling)


class OneBoxPerTile:
    """A `run` that finds one box at (8, 16, 24, 40) input pixels in every tile, scored by call order."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        count = batch.shape[0]
        start = sum(self.batches)
        self.batches.append(count)
        scores = torch.tensor([[0.99 - 0.001 * (start + i)] for i in range(count)])
        return {
            "boxes": torch.tensor([[[8.0, 16.0, 24.0, 40.0]]]).repeat(count, 1, 1),
            "scores": scores,
            "labels": torch.zeros(count, 1, dtype=torch.int64),
        }


@pytest.mark.parametrize(("tile", "scale"), [(64, 1), (128, 2)])
def test_results_map_back_to_image_pixels_exactly(detection_task: Any, tile: int, scale: int) -> None:
    """Tiles of `tile` px letterboxed to the 64 px input: a box at input (8, 16, 24, 40) is at
    origin + scale * (8, 16, 24, 40) in the image, to the last bit."""
    image = torch.zeros(3, 300, 500, dtype=torch.uint8)
    run = OneBoxPerTile()
    tiling = TileSpec(size=tile, overlap=0.25, batch=5)
    result = predict_tiled(image, run, task=detection_task, input_size=(64, 64), tiling=tiling)
    windows = tile_grid(300, 500, (tile, tile), 0.25)
    expected = sorted(
        (x0 + scale * 8, y0 + scale * 16, x0 + scale * 24, y0 + scale * 40) for x0, y0, _, _ in windows
    )
    assert sorted(map(tuple, result["boxes"].tolist())) == expected
    assert run.batches == [5] * (len(windows) // 5) + ([len(windows) % 5] if len(windows) % 5 else [])


def test_an_edge_tile_smaller_than_the_tile_maps_back_exactly(detection_task: Any) -> None:
    """A 40 x 100 image in 64 px tiles: windows 40 x 64, letterboxed into the 64 px input (scale 1,
    12 px of padding above and below); the box lands at input y - 12 in the image."""
    run = OneBoxPerTile()
    image = torch.zeros(3, 40, 100, dtype=torch.uint8)
    result = predict_tiled(image, run, task=detection_task, input_size=(64, 64), tiling=TileSpec(size=64))
    assert sorted(map(tuple, result["boxes"].tolist())) == [(8.0, 4.0, 24.0, 28.0), (44.0, 4.0, 60.0, 28.0)]


# -- the models -----------------------------------------------------------------------------------
def matched(first: dict[str, Any], second: dict[str, Any], tolerance: float) -> bool:
    """Every box of `first` has one of its label in `second` within `tolerance` px and 1e-4 in score."""
    for box, score, label in zip(first["boxes"], first["scores"], first["labels"], strict=True):
        same = torch.as_tensor(second["labels"]) == label
        boxes = torch.as_tensor(second["boxes"])[same]
        scores = torch.as_tensor(second["scores"])[same]
        close = ((boxes - box).abs().max(dim=1).values <= tolerance) & ((scores - score).abs() <= 1e-4)
        if not bool(close.any()):
            return False
    return True


@pytest.mark.parametrize("merge", ["fusion", "nms"])
def test_torch_and_onnxruntime_merge_the_same_detections(
    tiled_run: Path, manager: PluginManager, merge: str
) -> None:
    model = load_model(tiled_run / "best.pt", plugins=manager)
    runtime = OnnxModel(tiled_run / "model.onnx")
    tile = {"size": 64, "overlap": 0.25, "batch": 4, "merge": merge, "full_image": True}
    images = [large_image(7), large_image(8, size=200)]
    ours = model.predict(images, tile=tile, score_threshold=0.2)
    theirs = runtime.predict(images, tile=tile, score_threshold=0.2)
    for a, b, image in zip(ours, theirs, images, strict=True):
        assert len(a["boxes"]) == len(b["boxes"]) > 5
        assert matched(a, b, 1e-3) and matched(b, a, 1e-3)
        boxes = torch.as_tensor(a["boxes"])
        assert float(boxes[:, 2].max()) <= image.shape[-1] and float(boxes[:, 3].max()) <= image.shape[-2]
    whole = model.predict(images[:1], score_threshold=0.2)[0]
    assert len(whole["boxes"]) < len(ours[0]["boxes"])  # 8-20 px shapes shrink 4x when letterboxed whole


def test_a_classifier_cannot_tile(manager: PluginManager) -> None:
    from toolkit.build import build_model

    spec = load_spec(
        REPO / "configs" / "classifier_resnet18_shapes.yaml", ["model.input_size=64"], plugins=manager
    )
    model = build_model(spec, plugins=manager)
    with pytest.raises(ToolkitError, match=r"sliced inference needs a task that merges tile results"):
        model.predict(torch.zeros(3, 200, 200, dtype=torch.uint8), tile=64)


MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys, torch
    from toolkit.build import Builder
    from toolkit.inference import merge_tiles, tile_batches
    from toolkit.spec import TileSpec

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    task = Builder().task("detection", named_by="the memory probe")
    image = torch.full((3, 6000, 6000), 128, dtype=torch.uint8)  # 108 MB
    before = peak_mb()
    tiles = 0
    for batch, meta, where in tile_batches(image, (512, 512), TileSpec(size=512, overlap=0.2, batch=4), task):
        tiles += len(batch)
    assert tiles == 15 * 15, tiles
    print(peak_mb() - before)
    """
)


def test_tiles_stream_a_batch_at_a_time() -> None:
    """A 6000 x 6000 image in 512 px tiles (225 windows, 708 MB as float tiles at once): the peak
    grows by a few batches (4 float tiles: 12.6 MB), not by the tiles."""
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    growth_mb = float(done.stdout.strip().splitlines()[-1])
    assert growth_mb < 150, growth_mb


# -- the commands ---------------------------------------------------------------------------------
def test_predict_and_eval_tile_from_the_command_line(tiled_run: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    to_pil_image(large_image(7)).save(images / "big.png")
    out = tmp_path / "out"
    predicted = run_cli_here(
        "predict", str(tiled_run / "best.pt"), str(images), "--tile", "64", "--overlap", "0.25",
        "--batch", "4", "--merge", "nms", "--threshold", "0.2", "--out", str(out),
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == 1 and len(records[0]["boxes"]) > 5
    assert max(box[2] for box in records[0]["boxes"]) <= 256 and (out / "big.png").is_file()
    coco = json.loads((out / "results_coco.json").read_text())
    assert len(coco) == len(records[0]["boxes"])
    # the spec's predict.tile (size 64) drives eval; --no-tile letterboxes the whole image
    tiled = run_cli_here("eval", str(tiled_run / "best.pt"), "--json", "--no-progress")
    whole = run_cli_here("eval", str(tiled_run / "best.pt"), "--no-tile", "--json", "--no-progress")
    assert tiled.returncode == whole.returncode == 0, tiled.stderr + whole.stderr
    tiled_metrics, whole_metrics = json.loads(tiled.stdout), json.loads(whole.stdout)
    assert tiled_metrics["AP_small"] > 2 * whole_metrics["AP_small"]
    assert tiled_metrics["AP_large"] is None  # no large objects: null in JSON
    table = run_cli_here("eval", str(tiled_run / "best.pt"), "--no-progress")
    assert "AP_large    -" in table.stdout and "nan" not in table.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tile", "16"], "tile: size: Input should be greater than or equal to 32"),
        (["--overlap", "0.3", "--no-tile"], "--no-tile turns tiling off, but --overlap was given too"),
        (["--tile", "64", "--overlap", "1.5"], "tile: overlap: Input should be less than or equal to 0.9"),
    ],
)
def test_bad_tile_options_are_user_errors(
    tiled_run: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    to_pil_image(large_image(3, size=96)).save(images / "a.png")
    result = run_cli_here("predict", str(tiled_run / "best.pt"), str(images), *flags)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_tiled_predict_reads_images_past_the_default_pixel_limit(
    tiled_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PIL's bomb limit is for whole images; a tiled prediction reads one image at a time, up to
    16384 x 16384 (here the limit is lowered so that a small image stands in for a huge one)."""
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    path = tmp_path / "big.png"
    to_pil_image(large_image(5, size=160)).save(path)
    whole = run_cli_here("predict", str(tiled_run / "best.pt"), str(path), "--no-tile")
    assert whole.returncode == 2 and "image of 25600 pixels exceeds the" in whole.stdout
    tiled = run_cli_here("predict", str(tiled_run / "best.pt"), str(path), "--tile", "64")
    assert tiled.returncode == 0, tiled.stdout + tiled.stderr
    assert Image.MAX_IMAGE_PIXELS == 10_000  # put back


# -- the data -------------------------------------------------------------------------------------
def test_shapes_draws_small_objects_in_large_images(manager: PluginManager) -> None:
    dataset = ShapesDataset(
        length=2, image_size=1024, seed=0, min_objects=60, max_objects=60, object_size=(12, 40)
    )
    image, target = dataset[0]
    sides = torch.maximum(
        target["boxes"][:, 2] - target["boxes"][:, 0], target["boxes"][:, 3] - target["boxes"][:, 1]
    )
    assert image.shape == (3, 1024, 1024) and len(sides) >= 40  # most of the 60 stay visible
    assert float(sides.min()) >= 6 and float(sides.max()) <= 41  # diameters 12-40: boxes no larger
    result = run_cli_here("validate", str(CONFIG), "data.val.object_size=[50, 20]")
    assert result.returncode == 2 and "object_size [50.0, 20.0] must be [min, max]" in result.stderr
