"""`toolkit predict MODEL SOURCES...` (`toolkit.commands.predict.run_predict`): ONNX files, checkpoints and
spec + checkpoint on files, folders and globs; unreadable images reported and counted; the files
written; the ONNX file and its checkpoint giving the same detections through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, run_cli
from PIL import Image

from toolkit.build import Builder, build_model
from toolkit.commands.predict import (
    describe,
    find_images,
    jsonable,
    run_predict,
    unique_name,
)
from toolkit.errors import ToolkitError
from toolkit.export.onnx_export import export_onnx
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

DETECTOR = (
    "configs/centernet_resnet18_shapes.yaml",
    ["model.input_size=64", "model.head.neck_channels=[16, 16, 16]", "model.head.head_conv=8"],
)
CATEGORY_IDS = [11, 22, 33]


def assert_same_detections(first: dict, second: dict, box_tol: float = 1e-3, score_tol: float = 1e-4) -> None:
    """Equal as sets: labels equal, boxes within `box_tol` px, scores within `score_tol`."""
    assert len(first["scores"]) == len(second["scores"])
    unmatched = list(range(len(second["scores"])))
    for box, score, label in zip(first["boxes"], first["scores"], first["labels"], strict=True):
        match = next(
            (
                j
                for j in unmatched
                if second["labels"][j] == label
                and max(abs(a - b) for a, b in zip(second["boxes"][j], box, strict=True)) <= box_tol
                and abs(second["scores"][j] - score) <= score_tol
            ),
            None,
        )
        assert match is not None, f"detection {label} {score} {box} has no counterpart"
        unmatched.remove(match)


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


@pytest.fixture(scope="module")
def models(manager: PluginManager, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small detector as an ONNX file, a checkpoint (carrying its spec) and a spec file."""
    torch.manual_seed(0)
    spec = load_spec(REPO / DETECTOR[0], DETECTOR[1], plugins=manager)
    model = build_model(spec, plugins=manager).eval()
    with torch.no_grad():
        model.head.heatmap[-1].weight.mul_(30.0)  # spread the untrained detector's scores apart
    folder = tmp_path_factory.mktemp("models")
    export_onnx(model, folder / "model.onnx", spec=spec.model_dump(mode="json"), category_ids=CATEGORY_IDS)
    torch.save({"model": model.state_dict(), "spec": spec.model_dump(mode="json")}, folder / "model.pt")
    (folder / "spec.json").write_text(json.dumps(spec.model_dump(mode="json")))
    return {"onnx": folder / "model.onnx", "checkpoint": folder / "model.pt", "spec": folder / "spec.json"}


def write_images(folder: Path) -> list[Path]:
    """Three images of different sizes and formats, two with the same stem (one in a subfolder)."""
    generator = torch.Generator().manual_seed(5)
    paths = [folder / "a.png", folder / "b.JPG", folder / "sub" / "a.bmp"]
    for path, (height, width) in zip(paths, [(48, 80), (96, 60), (64, 64)], strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator)
        Image.fromarray(pixels.numpy()).save(path)
    return paths


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    write_images(folder)
    return folder


@pytest.fixture
def images_and_a_corrupt_one(images: Path) -> Path:
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (images / "notes.txt").write_text("not an image: a folder search skips it")
    return images


def predict(model: Path, sources: list[str], manager: PluginManager, **kwargs: Any) -> tuple[list[str], int]:
    options: dict[str, Any] = {
        "checkpoint": None,
        "out_dir": None,
        "score_threshold": 0.0,
        "batch_size": 2,
        "device": "cpu",
        "provider": "cpu",
        "as_json": False,
        **kwargs,
    }
    return run_predict(str(model), sources, Builder(manager), **options)


# -- inputs -------------------------------------------------------------------------------------
def test_sources_are_files_folders_and_globs(images: Path) -> None:
    (images / "notes.txt").write_text("skipped")
    everything = find_images([str(images)])
    assert [p.relative_to(images).as_posix() for p in everything] == ["a.png", "b.JPG", "sub/a.bmp"]
    assert find_images([str(images / "**" / "a.*")]) == [images / "a.png", images / "sub" / "a.bmp"]
    assert find_images([str(images / "b.JPG"), str(images)])[0] == images / "b.JPG"  # each once, in order
    assert len(find_images([str(images / "b.JPG"), str(images)])) == 3
    with pytest.raises(ToolkitError, match=r"no images found in 'nowhere/', 'nothing\*.png'"):
        find_images(["nowhere/", "nothing*.png"])


def test_small_helpers() -> None:
    taken: set[str] = set()
    assert [unique_name(stem, taken) for stem in ("a", "b", "a", "a")] == ["a", "b", "a_1", "a_2"]
    record = {"image": "x.png", "boxes": [[1.0, 2.0, 4.0, 8.0]], "scores": [0.5], "labels": [2]}
    from toolkit_plugins.tasks.detection_task import DetectionTask

    files = DetectionTask().result_files([record], [7, 8, 9], [0])
    assert files == {
        "results_coco.json": [
            {
                "image_id": 0,
                "category_id": 9,
                "bbox": [1.0, 2.0, 3.0, 6.0],
                "score": 0.5,
                "file_name": "x.png",
            }
        ]
    }
    assert DetectionTask().result_files([record], None, [5])["results_coco.json"][0]["category_id"] == 2
    result = {"boxes": torch.zeros(2, 4), "scores": torch.tensor([0.5, 0.25]), "class_names": ["a", "b"]}
    assert jsonable(result)["scores"] == [0.5, 0.25]
    assert describe(result) == "boxes: 2, scores: 2, class_names: ['a', 'b']"


# -- run_predict --------------------------------------------------------------------------------
def test_a_folder_with_a_corrupt_image_predicts_the_rest(
    models: dict[str, Path], images_and_a_corrupt_one: Path, manager: PluginManager, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    lines, failed = predict(models["onnx"], [str(images_and_a_corrupt_one)], manager, out_dir=str(out))
    assert failed == 1
    broken = [line for line in lines if "broken.png" in line]
    assert len(broken) == 1 and "cannot read" in broken[0], lines
    assert lines[-1].startswith("3 images predicted, 1 failed") and str(out) in lines[-1]
    records = json.loads((out / "predictions.json").read_text())
    assert [Path(r["image"]).name for r in records] == ["a.png", "b.JPG", "a.bmp"]
    assert all(set(r) >= {"image", "boxes", "scores", "labels", "class_names"} for r in records)
    coco = json.loads((out / "results_coco.json").read_text())
    assert len(coco) == sum(len(r["scores"]) for r in records) > 0
    assert {d["category_id"] for d in coco} <= set(CATEGORY_IDS)
    first = next(d for d in coco if d["image_id"] == 0)
    assert first["file_name"] == records[0]["image"] and len(first["bbox"]) == 4
    box = records[0]["boxes"][0]
    assert first["bbox"] == pytest.approx([box[0], box[1], box[2] - box[0], box[3] - box[1]])
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "a_1.png", "b.png"]
    with Image.open(out / "b.png") as drawn:
        assert drawn.size == (60, 96)  # drawn on the original image


def test_json_output_keeps_stdout_json_and_reports_failures_on_stderr(
    models: dict[str, Path],
    images_and_a_corrupt_one: Path,
    manager: PluginManager,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines, failed = predict(models["onnx"], [str(images_and_a_corrupt_one)], manager, as_json=True)
    assert failed == 1 and len(lines) == 1
    assert len(json.loads(lines[0])) == 3
    assert "broken.png: cannot read" in capsys.readouterr().err


def test_checkpoint_spec_and_onnx_give_the_same_detections(
    models: dict[str, Path], images: Path, manager: PluginManager
) -> None:
    def records(model: Path, **kwargs: Any) -> list[dict]:
        lines, failed = predict(model, [str(images)], manager, as_json=True, **kwargs)
        assert failed == 0
        return json.loads(lines[0])

    from_onnx = records(models["onnx"])
    from_checkpoint = records(models["checkpoint"], provider=None)
    from_spec = records(models["spec"], checkpoint=str(models["checkpoint"]), provider=None)
    assert from_checkpoint == from_spec
    for one, other in zip(from_checkpoint, from_onnx, strict=True):
        assert one["image"] == other["image"]
        assert_same_detections(one, other)


def test_model_and_checkpoint_mismatches_are_refused(models: dict[str, Path], images: Path) -> None:
    manager = PluginManager()
    with pytest.raises(ToolkitError, match="ONNX file: it carries its weights"):
        predict(models["onnx"], [str(images)], manager, checkpoint=str(models["checkpoint"]))
    with pytest.raises(ToolkitError, match="spec file: give its weights with --checkpoint"):
        predict(models["spec"], [str(images)], manager)
    with pytest.raises(ToolkitError, match="applies to ONNX files"):
        predict(models["checkpoint"], [str(images)], manager, provider="cuda")
    with pytest.raises(ToolkitError, match="no images found"):
        predict(models["onnx"], [str(images / "missing")], manager)


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_onnx_and_checkpoint_give_the_same_detections(models: dict[str, Path], images: Path) -> None:
    common = [str(images), "--threshold", "0", "--json", "--batch", "2"]
    onnx = run_cli("predict", str(models["onnx"]), *common, "--provider", "cpu")
    assert onnx.returncode == 0, onnx.stderr
    checkpoint = run_cli("predict", str(models["checkpoint"]), *common)
    assert checkpoint.returncode == 0, checkpoint.stderr
    from_onnx, from_checkpoint = json.loads(onnx.stdout), json.loads(checkpoint.stdout)
    assert len(from_onnx) == 3 and sum(len(r["scores"]) for r in from_onnx) > 0
    for one, other in zip(from_checkpoint, from_onnx, strict=True):
        assert one["image"] == other["image"]
        assert_same_detections(one, other)


def test_cli_exits_2_when_an_input_failed(
    models: dict[str, Path], images_and_a_corrupt_one: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run_cli("predict", str(models["onnx"]), str(images_and_a_corrupt_one), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert "broken.png" in result.stdout + result.stderr
    assert "3 images predicted, 1 failed" in result.stdout
    assert (out / "predictions.json").is_file() and (out / "results_coco.json").is_file()
    refused = run_cli(
        "predict",
        str(models["onnx"]),
        str(images_and_a_corrupt_one),
        "--checkpoint",
        str(models["checkpoint"]),
    )
    assert refused.returncode == 2 and "carries its weights" in refused.stderr
    assert "Traceback" not in refused.stderr
