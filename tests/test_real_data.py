"""Real data: a dataset takes the model's class names unless it names its own, and EXIF-rotated,
grayscale, palette, RGBA, CMYK and 16-bit images are read upright as 8-bit RGB on every path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, run_cli, run_cli_here
from detector_files import CATEGORY_IDS
from PIL import Image

from toolkit.build import Builder
from toolkit.data.images import image_size, read_image
from toolkit.errors import ToolkitError
from toolkit.inference import as_image
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec


def spec_with(
    detector: dict[str, Path], manager: PluginManager, names: list[str], **dataset: object
) -> object:
    raw = {
        "model": {
            "backbone": {"type": "resnet18"},
            "head": {"type": "centernet"},
            "input_size": 64,
            "class_names": names,
        },
        "data": {
            "train": {
                "type": "coco",
                "images": str(detector["images"]),
                "annotations": str(detector["annotations"]),
                **dataset,
            }
        },
    }
    return load_spec(raw, plugins=manager)


def test_a_dataset_takes_the_models_class_names_unless_it_names_its_own(
    detector: dict[str, Path], manager: PluginManager
) -> None:
    dataset = Builder(manager).dataset(spec_with(detector, manager, ["triangle", "circle"]), "train")
    assert dataset.class_names == ["triangle", "circle"] and dataset.category_ids == [
        CATEGORY_IDS[2],
        CATEGORY_IDS[0],
    ]
    own = spec_with(detector, manager, ["triangle", "circle"], class_names=["circle", "square", "triangle"])
    with pytest.raises(
        ToolkitError,
        match=r"\['circle', 'square', 'triangle'\] differ from model.class_names \['triangle', 'circle'\]",
    ):
        Builder(manager).dataset(own, "train")
    with pytest.raises(ToolkitError, match="dog"):
        Builder(manager).dataset(spec_with(detector, manager, ["dog"]), "train")


def write_quirky(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, image in {
        "gray.png": Image.fromarray(rgb[:, :, 0]),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "rgba.png": Image.fromarray(np.dstack([rgb, rgb[:, :, :1]]), mode="RGBA"),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "deep.tiff": Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257),
        "deep.png": Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257),
    }.items():
        paths[name] = folder / name
        image.save(paths[name])
    return paths


def test_odd_image_modes_become_8_bit_rgb(tmp_path: Path) -> None:
    paths = write_quirky(tmp_path)
    gray = read_image(paths["gray.png"])
    for name, path in paths.items():
        image = read_image(path)
        assert image.dtype == torch.uint8 and image.shape == (3, 30, 50), name
        with Image.open(path) as pil:  # the PIL image given to predict reads the same
            assert torch.equal(as_image(pil, 0), image), name
    # 16-bit values are scaled to 8 bits (v * 257 -> v), not clipped to white
    assert torch.equal(read_image(paths["deep.png"]), gray) and torch.equal(
        read_image(paths["deep.tiff"]), gray
    )


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_on_every_path(tmp_path: Path, orientation: int) -> None:
    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    upright = {3: np.rot90(stored, 2), 6: np.rot90(stored, -1), 8: np.rot90(stored, 1)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    for suffix in ("png", "tiff"):  # torchvision decodes PNG, PIL decodes TIFF
        path = tmp_path / f"shot.{suffix}"
        Image.fromarray(stored).save(path, exif=exif)
        image = read_image(path)
        assert image_size(path) == (upright.shape[1], upright.shape[0])
        assert np.array_equal(image.permute(1, 2, 0).numpy(), upright), suffix
        with Image.open(path) as pil:
            assert torch.equal(as_image(pil, 0), image), suffix


BCCD = REPO.parent / "shared" / "datasets" / "bccd"


@pytest.mark.slow
def test_a_short_bccd_run_trains_evaluates_and_predicts_through_the_cli(tmp_path: Path) -> None:
    """Real microscope images (../shared/datasets/bccd, read in place): the recipe's spec at a small
    input, its val split (87 images) for one epoch, then eval and predict on its images."""
    assert (BCCD / "ImageSets" / "Main" / "val.txt").is_file(), f"BCCD is missing at {BCCD}"
    shrink = [
        f"data.train.root={BCCD}", f"data.val.root={BCCD}", "data.train.split=val", "model.input_size=64",
        "model.head.neck_channels=[16, 16, 16]", "model.head.head_conv=16", "data.batch_size=8",
    ]  # fmt: skip
    run = tmp_path / "run"
    config = str(REPO / "configs" / "bccd_centernet.yaml")
    trained = run_cli("train", config, *shrink, "train.time_limit=4", "--out", str(run), "--no-progress")
    assert trained.returncode == 0, trained.stderr
    assert "time limit 4 s" in trained.stdout and (run / "best.pt").is_file()
    assert "training boxes dropped / clipped  1 / 0" in trained.stdout  # BloodImage_00338's one-point box
    evaluated = run_cli_here("eval", str(run / "best.pt"), "--json", "--no-progress")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout)
    assert set(metrics["per_class"]) == {"RBC", "WBC", "Platelets"} and metrics["images"] == 87
    images = sorted((BCCD / "JPEGImages").glob("*.jpg"))[:3]
    predicted = run_cli_here(
        "predict", str(run / "best.pt"), *map(str, images), "--out", str(tmp_path / "pred")
    )
    assert predicted.returncode == 0, predicted.stderr
    with Image.open(tmp_path / "pred" / f"{images[0].stem}.png") as drawn:
        assert drawn.size == (640, 480)  # drawn on the original image
