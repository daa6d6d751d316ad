"""`toolkit data export | preview | stats` end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import REPO, run_cli
from PIL import Image

SHAPES = str(REPO / "configs/centernet_resnet18_shapes.yaml")
SMALL = ["data.train.length=6", "data.train.image_size=64", "model.input_size=64"]


def test_export_coco_then_train_spec_on_the_files(tmp_path: Path) -> None:
    out = tmp_path / "coco"
    result = run_cli("data", "export", SHAPES, str(out), "--format", "coco", *SMALL)
    assert result.returncode == 0, result.stderr
    annotations = next(out.rglob("*.json"))
    data = json.loads(annotations.read_text())
    assert len(data["images"]) == 6 and [c["name"] for c in data["categories"]] == [
        "circle",
        "square",
        "triangle",
    ]
    spec = yaml.safe_load(Path(SHAPES).read_text())
    images_dir = out / Path(data["images"][0]["file_name"]).parent
    if not (images_dir / Path(data["images"][0]["file_name"]).name).exists():
        images_dir = next(p.parent for p in out.rglob(Path(data["images"][0]["file_name"]).name))
    spec["data"]["train"] = {"type": "coco", "images": str(images_dir), "annotations": str(annotations)}
    spec["data"].pop("val")
    spec_path = tmp_path / "coco.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    stats = run_cli("data", "stats", str(spec_path), "--json", "model.input_size=64")
    assert stats.returncode == 0, stats.stderr
    counts = json.loads(stats.stdout)
    exported_objects = sum(c["objects"] for c in counts["classes"].values())
    assert counts["images"] == 6 and exported_objects == len(data["annotations"])


def test_export_voc_and_folder(tmp_path: Path) -> None:
    voc = run_cli("data", "export", SHAPES, str(tmp_path / "voc"), "--format", "voc", *SMALL)
    assert voc.returncode == 0, voc.stderr
    assert len(list((tmp_path / "voc").rglob("Annotations/*.xml"))) == 6
    wrong = run_cli("data", "export", SHAPES, str(tmp_path / "x"), "--format", "folder", *SMALL)
    assert wrong.returncode == 2 and "data.train is a detection dataset" in wrong.stderr
    assert "use --format coco or voc or yolo" in wrong.stderr and not (tmp_path / "x").exists()
    classifier = str(REPO / "configs/classifier_resnet18_shapes.yaml")
    folder = run_cli(
        "data", "export", classifier, str(tmp_path / "folder"), "--format", "folder", "data.train.length=8"
    )
    assert folder.returncode == 0, folder.stderr
    assert {p.name for p in (tmp_path / "folder").iterdir() if p.is_dir()} == {"absent", "present"}
    assert len(list((tmp_path / "folder").rglob("*.png"))) == 8


def test_preview_writes_the_requested_grid(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = run_cli("data", "preview", SHAPES, "-n", "4", "-o", str(out), *SMALL)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        # 2 x 2 tiles of 64 px with 4 px padding around each
        assert image.size == (2 * 64 + 3 * 4, 2 * 64 + 3 * 4)
    stats_png = tmp_path / "stats.png"
    stats = run_cli("data", "stats", SHAPES, "-o", str(stats_png), *SMALL)
    assert stats.returncode == 0, stats.stderr
    assert "circle" in stats.stdout and stats_png.stat().st_size > 1000


def test_data_commands_report_user_errors(tmp_path: Path) -> None:
    no_data = run_cli("data", "preview", str(REPO / "configs/centernet_resnet18.yaml"))
    assert no_data.returncode == 2 and "has no 'data' section" in no_data.stderr
    no_val = run_cli("data", "stats", SHAPES, "--split", "val", "data.val=null")
    assert no_val.returncode == 2 and "data.val is not set" in no_val.stderr
    bad_count = run_cli("data", "preview", SHAPES, "-n", "0")
    assert bad_count.returncode == 2 and "-n must be at least 1" in bad_count.stderr
