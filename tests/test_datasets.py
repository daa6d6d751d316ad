"""Dataset plugins: synthetic shapes, COCO / VOC / image-folder loading, writers and round trips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from torchvision import tv_tensors

from toolkit.data.images import read_image
from toolkit.data.writers import write_coco, write_image_folder, write_voc
from toolkit.errors import ToolkitError
from toolkit.plugins import PluginManager
from toolkit_plugins.datasets.coco_dataset import CocoDataset
from toolkit_plugins.datasets.image_folder_dataset import ImageFolderDataset
from toolkit_plugins.datasets.shapes import CATALOGUE
from toolkit_plugins.datasets.shapes_dataset import MIN_VISIBLE, ShapesDataset
from toolkit_plugins.datasets.voc_dataset import VocDataset

MODULES = [f"toolkit_plugins.datasets.{name}" for name in ("shapes", "coco", "voc", "image_folder")]


@pytest.fixture(scope="module")
def registry():
    manager = PluginManager(modules=MODULES, use_entry_points=False)
    assert not manager.failed
    return manager.registry("dataset")


@pytest.fixture(scope="module")
def shapes() -> ShapesDataset:
    return ShapesDataset(length=24, image_size=96, seed=3)


def _same_sample(a, b) -> None:
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1]["boxes"], b[1]["boxes"])
    assert a[1]["boxes"].canvas_size == b[1]["boxes"].canvas_size
    assert torch.equal(a[1]["labels"], b[1]["labels"])


# -- registration --------------------------------------------------------------------------------
def test_registration_modules_do_not_import_torch_or_numpy() -> None:
    code = (
        "import sys\n"
        f"for m in {MODULES!r}: __import__(m)\n"
        "heavy = [m for m in ('torch', 'numpy', 'torchvision', 'pycocotools') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_registered_params_exclude_the_injected_on_bad_sample(registry) -> None:
    assert registry.names() == ["coco", "image_folder", "shapes", "voc"]
    assert set(registry.get("coco").params.model_fields) == {
        "images",
        "annotations",
        "skip_empty",
        "class_names",
        "allow_absolute_paths",
    }
    assert set(registry.get("voc").params.model_fields) == {
        "root",
        "split",
        "class_names",
        "use_difficult",
        "split_file",
        "split_glob",
        "val_fraction",
        "seed",
    }
    assert set(registry.get("image_folder").params.model_fields) == {"root", "class_names"}
    assert "on_bad_sample" not in registry.get("shapes").params.model_fields
    for entry in registry:
        entry.params.model_json_schema()  # every params model has a JSON Schema


def test_shapes_params_validate_ranges_and_catalogue(registry) -> None:
    params = registry.get("shapes").params
    defaults = params.model_validate({})
    assert (defaults.task, defaults.length, defaults.image_size) == ("detection", 1000, 128)
    assert defaults.class_names == ["circle", "square", "triangle"]
    with pytest.raises(ValidationError, match=r"unknown shape 'hexagan' \(did you mean hexagon\?\).*circle"):
        params.model_validate({"class_names": ["circle", "hexagan"]})
    with pytest.raises(ValidationError, match="unknown shape 'sqare'"):
        params.model_validate({"task": "classification", "target": "sqare"})
    for bad in ({"image_size": 16}, {"image_size": 4096}, {"length": 0}, {"max_objects": 501}):
        with pytest.raises(ValidationError):
            params.model_validate(bad)
    with pytest.raises(ToolkitError, match="min_objects"):
        registry.get("shapes").build({"min_objects": 5, "max_objects": 2})


# -- shapes --------------------------------------------------------------------------------------
def test_shapes_are_deterministic_across_instances_and_access_order(shapes) -> None:
    again = ShapesDataset(length=24, image_size=96, seed=3)
    forward = [shapes[i] for i in range(len(shapes))]
    backward = [again[i] for i in reversed(range(len(again)))][::-1]
    for a, b in zip(forward, backward, strict=True):
        _same_sample(a, b)
    other = ShapesDataset(length=24, image_size=96, seed=4)
    assert not torch.equal(other[0][0], shapes[0][0])


def test_shapes_sample_contract(shapes) -> None:
    image, target = shapes[5]
    assert image.dtype == torch.uint8 and image.shape == (3, 96, 96)
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes)
    assert target["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
    assert target["boxes"].dtype == torch.float32 and target["boxes"].canvas_size == (96, 96)
    assert target["labels"].dtype == torch.int64 and target["image_id"] == 5
    assert shapes.task == "detection" and shapes.skipped == [] and shapes.category_ids == [0, 1, 2]
    with pytest.raises(IndexError):
        shapes[24]


def test_shapes_counts_classes_and_box_sizes() -> None:
    dataset = ShapesDataset(length=120, image_size=128, seed=0)
    counts, labels, sides = [], [], []
    for index in range(len(dataset)):
        sample = dataset.render(index, pixels=False)
        counts.append(len(sample.labels))
        labels += sample.labels.tolist()
        boxes = sample.boxes
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 128)
        assert np.all(boxes[:, 2:] > boxes[:, :2])
        assert np.array_equal(boxes, np.round(boxes))  # integer-valued
        sides += np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).tolist()
    assert min(counts) >= 1 and max(counts) <= 10
    assert 4 <= np.mean(counts) <= 7  # about (1 + 10) / 2, a few occluded shapes dropped
    assert sorted(set(labels)) == [0, 1, 2]
    assert min(np.bincount(labels)) > 0.25 * len(labels)
    sides = np.array(sides) / 128
    assert sides.min() < 1 / 12 and sides.max() > 0.4 and sides.max() <= 0.5 + 2 / 128
    assert np.quantile(sides, 0.25) < 0.14 < 0.25 < np.quantile(sides, 0.75)  # log-uniform: median ~ 0.18


def test_min_and_max_objects_bound_the_labelled_count() -> None:
    dataset = ShapesDataset(length=30, image_size=128, min_objects=3, max_objects=3)
    counts = [len(dataset.render(i, pixels=False).labels) for i in range(30)]
    assert max(counts) == 3 and np.mean(counts) > 2.5


def test_boxes_are_the_tight_bounds_of_the_drawn_masks(shapes) -> None:
    fully_visible = 0
    for index in range(len(shapes)):
        sample = shapes.render(index)
        for box, number, visible in zip(sample.boxes, sample.numbers, sample.visible, strict=True):
            ys, xs = np.nonzero(sample.id_map == number)
            assert visible >= MIN_VISIBLE and len(xs) > 0
            x1, y1, x2, y2 = box.tolist()
            assert x1 <= xs.min() and xs.max() + 1 <= x2 and y1 <= ys.min() and ys.max() + 1 <= y2
            if visible == 1.0:
                fully_visible += 1
                assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [x1, y1, x2, y2]
        drawn = set(np.unique(sample.id_map).tolist()) - {0}
        assert set(sample.numbers) <= drawn
    assert fully_visible > 20


def test_shapes_differ_from_their_background(shapes) -> None:
    sample = shapes.render(0)
    image = sample.image.astype(np.float64)
    for number in sample.numbers:
        inside = sample.id_map == number
        ring = np.zeros_like(inside)
        ys, xs = np.nonzero(inside)
        ring[max(ys.min() - 3, 0) : ys.max() + 4, max(xs.min() - 3, 0) : xs.max() + 4] = True
        ring &= sample.id_map == 0
        if ring.sum() > 20:
            contrast = np.linalg.norm(image[:, inside].mean(1) - image[:, ring].mean(1))
            assert contrast > 30


def test_every_catalogue_shape_renders() -> None:
    dataset = ShapesDataset(length=40, image_size=128, class_names=list(CATALOGUE), max_objects=12)
    seen = set()
    for index in range(len(dataset)):
        seen |= set(dataset.render(index, pixels=False).kinds)
    assert seen == set(CATALOGUE)


def test_classification_presence_is_balanced_and_true() -> None:
    dataset = ShapesDataset(
        task="classification", length=200, image_size=64, class_names=["circle", "square"]
    )
    assert dataset.class_names == ["absent", "present"] and dataset.target == "circle"
    labels = []
    for index in range(200):
        sample = dataset.render(index, pixels=False)
        label = int(sample.present)
        labels.append(label)
        assert ("circle" in sample.kinds) == bool(label)  # a visible target iff positive
        assert len(sample.kinds) >= 1
    assert 80 <= sum(labels) <= 120
    image, label = dataset[7]
    assert isinstance(label, int) and image.shape == (3, 64, 64) and label == labels[7]
    with pytest.raises(TypeError):
        dataset.ground_truth()


def test_shapes_ground_truth_matches_the_targets(shapes) -> None:
    truth = shapes.ground_truth()
    assert truth is shapes.ground_truth()  # cached
    assert [c["name"] for c in truth["categories"]] == shapes.class_names
    assert [image["id"] for image in truth["images"]] == list(range(len(shapes)))
    for index in (0, 9, 23):
        _, target = shapes[index]
        anns = [a for a in truth["annotations"] if a["image_id"] == index]
        xywh = target["boxes"].clone()
        xywh[:, 2:] -= xywh[:, :2]
        assert torch.equal(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4), xywh)
        assert [a["category_id"] for a in anns] == target["labels"].tolist()
        assert all(a["iscrowd"] == 0 and a["ignore"] == 0 for a in anns)


# -- round trips ---------------------------------------------------------------------------------
def test_coco_export_round_trip(shapes, tmp_path: Path) -> None:
    root = write_coco(shapes, tmp_path / "coco")
    document = json.loads((root / "annotations" / "instances.json").read_text())
    # the dataset's own ids (shapes: the labels), those a model trained on it writes in its results
    assert [c["id"] for c in document["categories"]] == shapes.category_ids == [0, 1, 2]
    assert len(list((root / "images").glob("*.png"))) == len(shapes)
    loaded = CocoDataset(images=root / "images", annotations=root / "annotations" / "instances.json")
    assert len(loaded) == len(shapes) and loaded.class_names == shapes.class_names
    assert loaded.category_ids == [0, 1, 2] and loaded.skipped == []
    for index in range(len(shapes)):
        _same_sample(shapes[index], loaded[index])
    assert [a["bbox"] for a in loaded.ground_truth()["annotations"]] == [
        a["bbox"] for a in shapes.ground_truth()["annotations"]
    ]


def test_voc_export_round_trip(shapes, tmp_path: Path) -> None:
    root = write_voc(shapes, tmp_path / "voc", split="val")
    assert root == tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    assert (root / "ImageSets" / "Main" / "val.txt").read_text().split() == [f"{i:06d}" for i in range(24)]
    loaded = VocDataset(root=root, split="val", class_names=shapes.class_names)
    assert len(loaded) == len(shapes)
    for index in range(len(shapes)):
        _same_sample(shapes[index], loaded[index])
    box = shapes[0][1]["boxes"][0].tolist()
    xml = (root / "Annotations" / "000000.xml").read_text()
    assert f"<xmin>{int(box[0]) + 1}</xmin>" in xml and f"<xmax>{int(box[2])}</xmax>" in xml


def test_image_folder_round_trip(tmp_path: Path) -> None:
    source = ShapesDataset(task="classification", length=12, image_size=48, seed=1)
    root = write_image_folder(source, tmp_path / "folder")
    loaded = ImageFolderDataset(root=root)
    assert loaded.class_names == ["absent", "present"] and loaded.task == "classification"
    assert len(loaded) == 12
    by_name = {path.name: (path, label) for path, label in loaded.samples}
    for index in range(12):
        image, label = source[index]
        path, loaded_label = by_name[f"{index:06d}.png"]
        assert loaded_label == label and path.parent.name == source.class_names[label]
        assert torch.equal(loaded[loaded.samples.index((path, label))][0], image)


def test_voc_difficult_and_crowd_survive_export(tmp_path: Path) -> None:
    root = _voc_tree(tmp_path, objects=[("dog", (11, 21, 40, 50), 0), ("cat", (1, 1, 10, 10), 1)])
    plain = VocDataset(root=root, class_names=["cat", "dog"])
    assert plain[0][1]["labels"].tolist() == [1]
    assert plain[0][1]["boxes"].tolist() == [[10.0, 20.0, 40.0, 50.0]]  # 1-based -> 0-based
    both = VocDataset(root=root, class_names=["cat", "dog"], use_difficult=True)
    assert both[0][1]["labels"].tolist() == [1, 0]
    truth = plain.ground_truth()
    assert [(a["category_id"], a["ignore"], a["iscrowd"]) for a in truth["annotations"]] == [
        (1, 0, 0),
        (0, 1, 0),
    ]
    assert truth["annotations"][1]["bbox"] == [0.0, 0.0, 10.0, 10.0]
    exported = write_coco(plain, tmp_path / "coco")
    again = CocoDataset(images=exported / "images", annotations=exported / "annotations" / "instances.json")
    assert again[0][1]["labels"].tolist() == [1]
    assert [a["ignore"] for a in again.ground_truth()["annotations"]] == [0, 1]


# -- COCO specifics ------------------------------------------------------------------------------
def _coco_files(tmp_path: Path, annotations: list[dict], categories: list[dict], n_images: int = 3) -> dict:
    (tmp_path / "images").mkdir(exist_ok=True)
    images = []
    for i in range(n_images):
        array = np.full((40, 60, 3), 40 * i, dtype=np.uint8)
        Image.fromarray(array).save(tmp_path / "images" / f"im{i}.png")
        images.append({"id": 100 + i, "file_name": f"im{i}.png", "width": 60, "height": 40})
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return {"images": str(tmp_path / "images"), "annotations": str(path)}


def _ann(ann_id: int, image_id: int, category: int, bbox: list[float], crowd: int = 0) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category, "bbox": bbox, "iscrowd": crowd}


def test_coco_non_contiguous_category_ids(tmp_path: Path) -> None:
    categories = [{"id": 42, "name": "c42"}, {"id": 3, "name": "c3"}, {"id": 7, "name": "c7"}]
    anns = [_ann(1, 100, 42, [1, 2, 10, 10]), _ann(2, 100, 3, [5, 5, 4, 4]), _ann(3, 101, 7, [0, 0, 60, 40])]
    paths = _coco_files(tmp_path, anns, categories)
    dataset = CocoDataset(**paths)
    assert dataset.class_names == ["c3", "c7", "c42"] and dataset.category_ids == [3, 7, 42]
    assert dataset[0][1]["labels"].tolist() == [2, 0] and dataset[1][1]["labels"].tolist() == [1]
    assert dataset[0][1]["boxes"].tolist() == [[1.0, 2.0, 11.0, 12.0], [5.0, 5.0, 9.0, 9.0]]
    assert dataset[0][1]["image_id"] == 100
    truth = dataset.ground_truth()
    assert truth["categories"] == [{"id": 0, "name": "c3"}, {"id": 1, "name": "c7"}, {"id": 2, "name": "c42"}]
    assert [a["category_id"] for a in truth["annotations"]] == [2, 0, 1]
    subset = CocoDataset(**paths, class_names=["c42", "c3"])
    assert subset.category_ids == [42, 3] and subset[0][1]["labels"].tolist() == [0, 1]
    assert subset[1][1]["labels"].tolist() == []
    with pytest.raises(ToolkitError, match=r"\['dog'\] are not categories.*c3, c7, c42"):
        CocoDataset(**paths, class_names=["dog"])


def test_coco_crowd_and_empty_images(tmp_path: Path) -> None:
    categories = [{"id": 1, "name": "thing"}]
    anns = [
        _ann(1, 100, 1, [1, 1, 10, 10]),
        _ann(2, 100, 1, [20, 5, 30, 30], crowd=1),
        _ann(3, 101, 1, [0, 0, 5, 5], 1),
    ]
    paths = _coco_files(tmp_path, anns, categories, n_images=3)
    dataset = CocoDataset(**paths)
    assert len(dataset) == 3
    assert dataset[0][1]["boxes"].tolist() == [[1.0, 1.0, 11.0, 11.0]]  # crowd left out
    assert dataset[1][1]["boxes"].shape == (0, 4) and dataset[2][1]["labels"].shape == (0,)
    truth = dataset.ground_truth()
    assert [(a["image_id"], a["iscrowd"]) for a in truth["annotations"]] == [(100, 0), (100, 1), (101, 1)]
    assert [image["id"] for image in truth["images"]] == [100, 101, 102]
    kept = CocoDataset(**paths, skip_empty=True)  # 101 has only a crowd box, 102 nothing
    assert len(kept) == 1 and kept[0][1]["image_id"] == 100
    assert [image["id"] for image in kept.ground_truth()["images"]] == [100]


def test_coco_clips_boxes_within_one_pixel(tmp_path: Path) -> None:
    paths = _coco_files(tmp_path, [_ann(1, 100, 1, [-0.5, 2, 61, 38.5])], [{"id": 1, "name": "a"}], 1)
    dataset = CocoDataset(**paths)
    assert dataset[0][1]["boxes"].tolist() == [[0.0, 2.0, 60.0, 40.0]] and dataset.skipped == []


# -- images --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "RGB", "I;16"])
def test_read_image_converts_to_rgb(tmp_path: Path, mode: str) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    source = Image.fromarray(rgb)
    if mode == "I;16":
        source = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    elif mode != "RGB":
        source = source.convert(mode)
    source.save(tmp_path / "im.png")
    image = read_image(tmp_path / "im.png")
    assert image.dtype == torch.uint8 and image.shape == (3, 10, 14)
    expected = np.asarray(source.convert("RGB")) if mode != "I;16" else np.repeat(rgb[..., :1], 3, axis=2)
    assert torch.equal(image, torch.from_numpy(np.array(expected)).permute(2, 0, 1))


def test_read_image_decodes_other_formats(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    expected = torch.from_numpy(rgb).permute(2, 0, 1)
    Image.fromarray(rgb).save(tmp_path / "im.bmp")  # decoded by PIL (torchvision has no BMP decoder)
    assert torch.equal(read_image(tmp_path / "im.bmp"), expected)
    Image.fromarray(rgb).save(tmp_path / "im.webp", lossless=True)
    assert torch.equal(read_image(tmp_path / "im.webp"), expected)
    frames = [Image.fromarray(np.full((9, 11, 3), v, dtype=np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    gif = read_image(tmp_path / "anim.gif")  # an animated GIF gives its first frame
    assert gif.shape == (3, 9, 11) and int(gif.max()) == 0


def test_image_folder_extensions_and_class_subset(tmp_path: Path) -> None:
    for name, files in {
        "cats": ["a.JPG", "b.png", "notes.txt"],
        "dogs": ["c.WebP", "sub/d.jpeg"],
        "x": ["e.bmp"],
    }.items():
        for file in files:
            (tmp_path / name / file).parent.mkdir(parents=True, exist_ok=True)
            if file.endswith(".txt"):
                (tmp_path / name / file).write_text("not an image")
            else:
                Image.new("RGB", (8, 6), (10, 20, 30)).save(tmp_path / name / file)
    dataset = ImageFolderDataset(root=tmp_path)
    assert dataset.class_names == ["cats", "dogs", "x"] and dataset.targets == [0, 0, 1, 1, 2]
    assert [p.name for p, _ in dataset.samples] == ["a.JPG", "b.png", "c.WebP", "d.jpeg", "e.bmp"]
    assert dataset[2][0].shape == (3, 6, 8) and dataset[2][1] == 1
    subset = ImageFolderDataset(root=tmp_path, class_names=["x", "cats"])
    assert subset.targets == [0, 1, 1]


def _voc_tree(tmp_path: Path, objects: list[tuple[str, tuple[int, int, int, int], int]]) -> Path:
    root = tmp_path / "voc"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    Image.new("RGB", (64, 56), (90, 90, 90)).save(root / "JPEGImages" / "img1.jpg", quality=95)
    parts = "".join(
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b, difficult in objects
    )
    size = "<size><width>64</width><height>56</height></size>"
    xml = f"<annotation><filename>img1.jpg</filename>{size}{parts}</annotation>"
    (root / "Annotations" / "img1.xml").write_text(xml)
    (root / "ImageSets" / "Main" / "train.txt").write_text("img1\n")
    return root
