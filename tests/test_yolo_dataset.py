"""The `yolo` dataset: Ultralytics data.yaml or images/ + labels/ folders, on small hand-made files."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, run_cli, run_cli_here
from PIL import Image

from toolkit.data.writers import write_yolo
from toolkit.errors import BadSampleError, DataError
from toolkit.plugins import PluginManager
from toolkit_plugins.datasets.common import DataWarning
from toolkit_plugins.datasets.shapes_dataset import ShapesDataset
from toolkit_plugins.datasets.yolo_dataset import YoloDataset

W, H = 40, 20  # every test image: 40 x 20 pixels
NAMES = ["cat", "dog"]


def _png(path: Path, size: tuple[int, int] = (W, H)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 60, 30)).save(path)
    return path


def _tree(
    root: Path, labels: dict[str, str | None], *, split: str = "train", data: dict | None = None
) -> Path:
    """root/images/<split>/<name>.png with root/labels/<split>/<name>.txt (None: no label file), and
    a data.yaml (train and val: images/<split>, names: NAMES, updated by `data`); returns data.yaml."""
    for name, text in labels.items():
        _png(root / "images" / split / f"{name}.png")
        if text is not None:
            label = root / "labels" / split / f"{name}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text)
    document = {"train": f"images/{split}", "val": f"images/{split}", "names": NAMES} | (data or {})
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _quiet(**kwargs) -> YoloDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return YoloDataset(**kwargs)


def _boxes(dataset: YoloDataset, index: int = 0) -> list[list[float]]:
    return [[round(v, 4) for v in box] for box in dataset[index][1]["boxes"].tolist()]


# -- registration --------------------------------------------------------------------------------
def test_registration_is_light_and_typed() -> None:
    code = (
        "import sys, toolkit_plugins.datasets.yolo\n"
        "print([m for m in ('torch', 'numpy', 'torchvision', 'yaml') if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "torch" not in result.stdout and "numpy" not in result.stdout
    manager = PluginManager(modules=["toolkit_plugins.datasets.yolo"], use_entry_points=False)
    entry = manager.registry("dataset").get("yolo")
    assert set(entry.params.model_fields) == {
        "root",
        "split",
        "class_names",
        "allow_outside_root",
        "val_fraction",
        "seed",
    }
    assert entry.params.model_fields["class_names"].default is None  # model.class_names is injected
    with pytest.raises(ValueError, match="train"):
        entry.params.model_validate({"root": "x", "split": "valid"})
    entry.params.model_json_schema()


def test_entry_point_is_installed() -> None:
    manager = PluginManager()
    assert "yolo" in manager.registry("dataset").names()


# -- data.yaml -------------------------------------------------------------------------------------
@pytest.mark.parametrize("names", [NAMES, {0: "cat", 1: "dog"}, {1: "dog", 0: "cat"}])
def test_names_as_a_list_or_a_mapping(tmp_path: Path, names) -> None:
    data_yaml = _tree(tmp_path, {"a": "1 0.5 0.5 0.5 0.5\n"}, data={"names": names})
    for root in (data_yaml, tmp_path):  # the file, or the folder holding it
        dataset = YoloDataset(root=str(root))
        assert dataset.class_names == NAMES and dataset.category_ids == [0, 1]
        assert dataset.task == "detection" and dataset.skipped == []
        assert dataset[0][1]["labels"].tolist() == [1]
        assert _boxes(dataset) == [[10.0, 5.0, 30.0, 15.0]]


def test_names_problems_are_errors(tmp_path: Path) -> None:
    data_yaml = _tree(tmp_path, {"a": ""}, data={"names": {0: "cat", 2: "dog"}})
    with pytest.raises(DataError, match=r"needs the ids 0\.\.1"):
        YoloDataset(root=data_yaml)
    _tree(tmp_path, {"a": ""}, data={"names": NAMES, "nc": 3})
    with pytest.raises(DataError, match="'nc' is 3 but 'names' lists 2"):
        YoloDataset(root=data_yaml)
    _tree(tmp_path, {"a": ""})
    with pytest.raises(
        DataError, match=r"its names \['cat', 'dog'\] differ from class_names \['dog', 'cat'\]"
    ):
        YoloDataset(root=data_yaml, class_names=["dog", "cat"])
    assert YoloDataset(root=data_yaml, class_names=NAMES).class_names == NAMES
    _tree(tmp_path, {"a": ""}, data={"names": None})
    with pytest.raises(DataError, match="no class names"):
        YoloDataset(root=data_yaml)
    assert YoloDataset(root=data_yaml, class_names=["x"]).class_names == ["x"]


def test_bad_yaml_is_refused_with_the_file_name(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png")
    (tmp_path / "data.yaml").write_text("train: images\ntrain: images\n")
    with pytest.raises(DataError, match=r"data\.yaml: invalid YAML.*duplicate key"):
        YoloDataset(root=tmp_path)
    (tmp_path / "data.yaml").write_text("a: &x [1]\nb: !!python/object:os.system ['echo']\n")
    with pytest.raises(DataError, match="invalid YAML"):
        YoloDataset(root=tmp_path)
    (tmp_path / "data.yaml").write_text("#" * (2 << 20))
    with pytest.raises(DataError, match="larger than"):
        YoloDataset(root=tmp_path)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"train": "images", "names": NAMES}))
    with pytest.raises(DataError, match="no 'val' key; it lists train"):
        YoloDataset(root=tmp_path, split="val")


def test_split_sources_folders_lists_and_the_roboflow_parent(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d"):
        _png(tmp_path / "images" / name[0] / f"{name}.png")
    (tmp_path / "labels" / "a").mkdir(parents=True)
    (tmp_path / "labels" / "a" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "val.txt").write_text("./images/c/c.png\nimages/d/d.png\n\n")
    data = {"train": ["images/a", "images/b"], "val": "val.txt", "test": "../images/b", "names": NAMES}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(data))
    train = YoloDataset(root=tmp_path)
    assert [i["file_name"] for i in train.items] == ["images/a/a.png", "images/b/b.png"]
    assert [i["id"] for i in train.items] == [0, 1]  # the position in the sorted list
    assert len(train.ground_truth()["annotations"]) == 1
    val = YoloDataset(root=tmp_path, split="val")
    assert [i["file_name"] for i in val.items] == ["images/c/c.png", "images/d/d.png"]
    test = YoloDataset(root=tmp_path, split="test")  # Roboflow's ../ resolved as Ultralytics does
    assert [i["file_name"] for i in test.items] == ["images/b/b.png"]


# -- labels and box quirks -------------------------------------------------------------------------
def test_boxes_polygons_and_quirks(tmp_path: Path) -> None:
    text = (
        "0 0.5 0.5 0.5 0.5\n"  # (10, 5, 30, 15)
        "1 0.25 0.5 0 0.4\n"  # zero width: dropped
        "1 0.95 0.5 0.2 0.2\n"  # crosses the right border by 2 px: clipped to (34, 8, 40, 12)
        "0 1.5 0.5 0.2 0.2\n"  # wholly outside: dropped
        "1 0.1 0.1 0.3 0.1 0.2 0.6\n"  # a polygon: its bounding box (4, 2, 12, 12)
    )
    data_yaml = _tree(tmp_path, {"a": text, "b": "\n"})
    with pytest.warns(DataWarning) as caught:
        dataset = YoloDataset(root=data_yaml)
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(messages) == 1
    assert "dropped 2 boxes (1 wholly outside the image, 1 zero-area or inverted" in messages[0]
    assert "clipped 1 box crossing the image border" in messages[0] and "a.txt: line 2" in messages[0]
    assert dataset.dropped_boxes == 2 and dataset.clipped_boxes == 1 and dataset.skipped == []
    assert _boxes(dataset) == [[10.0, 5.0, 30.0, 15.0], [34.0, 8.0, 40.0, 12.0], [4.0, 2.0, 12.0, 12.0]]
    assert dataset[0][1]["labels"].tolist() == [0, 1, 1]
    assert dataset[1][1]["boxes"].shape == (0, 4)  # an empty label file: a negative


def test_images_without_labels_are_negatives(tmp_path: Path) -> None:
    data_yaml = _tree(tmp_path, {"a": None, "b": "", "c": "0 0.5 0.5 1 1\n"})
    dataset = YoloDataset(root=data_yaml)
    assert len(dataset) == 3 and dataset.dropped_boxes == 0 and dataset.clipped_boxes == 0
    assert [dataset[i][1]["boxes"].shape[0] for i in range(3)] == [0, 0, 1]
    truth = dataset.ground_truth()
    assert [a["image_id"] for a in truth["annotations"]] == [2]
    assert [c["name"] for c in truth["categories"]] == NAMES


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2 0.5 0.5 0.2 0.2", r"line 2: class id 2 is out of range for the 2 names \(cat, dog\)"),
        ("-1 0.5 0.5 0.2 0.2", "line 2: class id -1 is out of range"),
        ("0.5 0.5 0.5 0.2 0.2", "line 2: class id 0.5 is out of range"),
        ("0 0.5 x 0.2 0.2", "line 2: 'x' is not a number"),
        ("0 0.5 nan 0.2 0.2", "line 2: 'nan' is not a finite number"),
        ("0 0.5 0.5 0.2", "line 2: 4 numbers"),
        ("0 0.1 0.1 0.2 0.2 0.3", "line 2: a polygon needs pairs of coordinates"),
        ("0 20 10 8 4", "line 2: coordinates must be normalized"),
    ],
)
def test_malformed_lines_are_bad_samples(tmp_path: Path, line: str, reason: str) -> None:
    data_yaml = _tree(tmp_path, {"a": f"0 0.5 0.5 0.5 0.5\n{line}\n"})
    label = tmp_path / "labels" / "train" / "a.txt"
    with pytest.raises(BadSampleError, match=reason) as info:
        YoloDataset(root=data_yaml)
    assert info.value.file == str(label)
    with pytest.warns(DataWarning, match="skipped 1 "):
        dataset = YoloDataset(root=data_yaml, on_bad_sample="skip")
    assert len(dataset.skipped) == 1 and _boxes(dataset) == [[10.0, 5.0, 30.0, 15.0]]  # the line only


def test_keypoint_lines_use_their_box(tmp_path: Path) -> None:
    data_yaml = _tree(tmp_path, {"a": "0 0.5 0.5 0.5 0.5 0.4 0.4 2 0.6 0.6 2\n"}, data={"kpt_shape": [2, 3]})
    assert _boxes(YoloDataset(root=data_yaml)) == [[10.0, 5.0, 30.0, 15.0]]


def test_a_corrupt_image_is_a_bad_sample(tmp_path: Path) -> None:
    data_yaml = _tree(tmp_path, {"a": "", "b": ""})
    (tmp_path / "images" / "train" / "b.png").write_bytes(b"not a png")
    with pytest.raises(BadSampleError, match=r"b\.png"):
        YoloDataset(root=data_yaml)
    dataset = _quiet(root=data_yaml, on_bad_sample="skip")
    assert len(dataset) == 1 and len(dataset.skipped) == 1


# -- plain folders -------------------------------------------------------------------------------
def test_plain_root_with_split_folders_and_classes_txt(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "train" / "a.png")
    _png(tmp_path / "images" / "valid" / "b.png")  # Roboflow's name for val
    (tmp_path / "labels" / "valid").mkdir(parents=True)
    (tmp_path / "labels" / "valid" / "b.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    with pytest.raises(DataError, match="no class names"):
        YoloDataset(root=tmp_path)
    assert YoloDataset(root=tmp_path, class_names=NAMES).items[0]["file_name"] == "images/train/a.png"
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    val = YoloDataset(root=tmp_path, split="val")
    assert val.class_names == NAMES and val[0][1]["labels"].tolist() == [1]
    with pytest.raises(
        DataError, match=r"no images/test \(or test/images\) folder; it has images/train, images/valid"
    ):
        YoloDataset(root=tmp_path, split="test")


def test_flat_folder_with_a_seeded_val_fraction(tmp_path: Path) -> None:
    names = [f"im{i}" for i in range(10)]
    for name in names:
        _png(tmp_path / "images" / f"{name}.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "im3.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    whole = YoloDataset(root=tmp_path, class_names=NAMES)
    assert len(whole) == 10 and whole[3][1]["labels"].tolist() == [0]
    with pytest.raises(DataError, match="the whole folder is the train split: set val_fraction"):
        YoloDataset(root=tmp_path, class_names=NAMES, split="val")

    def split(part: str, seed: int = 0) -> list[str]:
        dataset = YoloDataset(root=tmp_path, class_names=NAMES, split=part, val_fraction=0.3, seed=seed)
        return [i["file_name"] for i in dataset.items]

    train, val = split("train"), split("val")
    assert len(val) == 3 and sorted(train + val) == sorted(i["file_name"] for i in whole.items)
    assert split("val") == val and split("val", seed=1) != val


# -- paths stay under the root ---------------------------------------------------------------------
def test_a_path_key_leaving_the_root_is_refused_unless_opted_in(tmp_path: Path) -> None:
    _tree(tmp_path / "data", {"a": "0 0.5 0.5 0.5 0.5\n"})
    config = tmp_path / "configs" / "data.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({"path": "../data", "train": "images/train", "names": NAMES}))
    with pytest.raises(
        DataError, match=r"'path': the path '\.\./data' leaves the dataset root.*allow_outside_root"
    ):
        YoloDataset(root=config)
    assert len(YoloDataset(root=config, allow_outside_root=True)) == 1
    config.write_text(yaml.safe_dump({"train": str(tmp_path / "data" / "images" / "train"), "names": NAMES}))
    with pytest.raises(DataError, match=r"'train': the path .* leaves the dataset root"):
        YoloDataset(root=config)
    assert len(YoloDataset(root=config, allow_outside_root=True)) == 1
    inside = tmp_path / "data" / "data.yaml"  # an absolute path inside the root is fine
    inside.write_text(
        yaml.safe_dump({"path": str(tmp_path / "data"), "train": "images/train", "names": NAMES})
    )
    assert len(YoloDataset(root=inside)) == 1


def test_list_file_lines_leaving_the_root_are_bad_samples(tmp_path: Path) -> None:
    _png(tmp_path / "outside" / "secret.png")
    root = tmp_path / "root"
    _tree(root, {"a": ""})
    (root / "list.txt").write_text(
        f"images/train/a.png\n../outside/secret.png\n{tmp_path / 'outside/secret.png'}\n"
    )
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "list.txt", "names": NAMES}))
    with pytest.raises(
        BadSampleError, match=r"list\.txt: line 2: the path '\.\./outside/secret\.png' leaves"
    ):
        YoloDataset(root=root)
    dataset = _quiet(root=root, on_bad_sample="skip")
    assert len(dataset) == 1 and len(dataset.skipped) == 2 and "line 3" in dataset.skipped[1]
    assert len(YoloDataset(root=root, allow_outside_root=True)) == 2


def test_a_link_leading_out_is_refused(tmp_path: Path) -> None:
    _png(tmp_path / "outside" / "secret.png")
    (tmp_path / "outside" / "secret.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    root = tmp_path / "root"
    data_yaml = _tree(root, {"a": ""})
    link = root / "images" / "train" / "b.png"
    link.symlink_to(tmp_path / "outside" / "secret.png")
    with pytest.raises(
        BadSampleError, match=r"b\.png: a link to .*outside/secret\.png, outside the dataset root"
    ):
        YoloDataset(root=data_yaml)
    dataset = _quiet(root=data_yaml, on_bad_sample="skip")
    assert len(dataset) == 1 and "allow_outside_root" in dataset.skipped[0]
    assert len(YoloDataset(root=data_yaml, allow_outside_root=True)) == 2
    link.unlink()  # a label file that is a link out: the image is refused, the label never read
    _png(link)
    (root / "labels" / "train" / "b.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    with pytest.raises(BadSampleError, match=r"b\.png: its label file: .*leads through a link"):
        YoloDataset(root=data_yaml)
    (root / "images" / "more").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "images/more", "names": NAMES}))
    with pytest.raises(DataError, match="'train': the file name 'images/more' leads through a link"):
        YoloDataset(root=data_yaml)


# -- export round trip and the CLI -----------------------------------------------------------------
def test_write_yolo_round_trip(tmp_path: Path) -> None:
    shapes = ShapesDataset(length=8, image_size=64, seed=3)
    out = write_yolo(shapes, tmp_path / "yolo", split="train")
    write_yolo(ShapesDataset(length=2, image_size=64, seed=4), out, split="val")
    document = yaml.safe_load((out / "data.yaml").read_text())
    assert document == {
        "path": str(out.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": shapes.class_names,
    }
    assert sorted(p.name for p in (out / "labels" / "train").iterdir())[:2] == ["000000.txt", "000001.txt"]
    loaded = YoloDataset(root=out)
    assert len(loaded) == 8 and loaded.class_names == shapes.class_names
    assert loaded.dropped_boxes == 0 and loaded.clipped_boxes == 0 and loaded.skipped == []
    for index in range(8):
        (image, target), (again, loaded_target) = shapes[index], loaded[index]
        assert torch.equal(image, again)
        assert torch.equal(target["labels"], loaded_target["labels"])
        assert torch.allclose(target["boxes"], loaded_target["boxes"], atol=1e-3)
    assert len(YoloDataset(root=out, split="val")) == 2
    with pytest.raises(Exception, match="other names"):
        write_yolo(
            ShapesDataset(length=2, image_size=64, seed=4, class_names=("circle", "square")), out, split="val"
        )


def _spec(tmp_path: Path, dataset: dict, names: list[str]) -> Path:
    spec = yaml.safe_load((REPO / "configs/centernet_resnet18_shapes.yaml").read_text())
    spec["model"]["class_names"] = names
    spec["model"]["input_size"] = [64, 64]
    spec["data"]["train"] = dataset
    spec["data"].pop("val", None)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_cli_export_yolo_then_stats_and_preview(tmp_path: Path) -> None:
    shapes = str(REPO / "configs/centernet_resnet18_shapes.yaml")
    small = ["data.train.length=5", "data.train.image_size=64", "model.input_size=64"]
    export = run_cli("data", "export", shapes, str(tmp_path / "out"), "--format", "yolo", *small)
    assert export.returncode == 0, export.stderr
    assert "as yolo" in export.stdout and (tmp_path / "out" / "data.yaml").is_file()
    assert len(list((tmp_path / "out" / "labels" / "train").glob("*.txt"))) == 5
    names = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())["names"]
    spec = _spec(tmp_path, {"type": "yolo", "root": str(tmp_path / "out")}, names)  # class_names injected
    stats = run_cli_here("data", "stats", str(spec), "--json")
    assert stats.returncode == 0, stats.stderr
    counts = json.loads(stats.stdout)
    objects = sum(
        len((tmp_path / "out" / "labels" / "train" / f"{i:06d}.txt").read_text().splitlines())
        for i in range(5)
    )
    assert counts["images"] == 5 and sum(c["objects"] for c in counts["classes"].values()) == objects
    assert counts["dropped_boxes"] == 0 and counts["clipped_boxes"] == 0
    preview = run_cli_here("data", "preview", str(spec), "-n", "2", "-o", str(tmp_path / "p.png"))
    assert preview.returncode == 0, preview.stderr
    wrong = run_cli_here("data", "stats", str(spec), "model.class_names=[a,b,c]")
    assert wrong.returncode == 2 and "differ from class_names ['a', 'b', 'c']" in wrong.stderr
