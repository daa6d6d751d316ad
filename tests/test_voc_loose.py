"""VOC without ImageSets: XML files beside their images or in a sibling folder, the split chosen by a
list file, a glob or a seeded fraction; class names from the XML files; BCCD, a real VOC dataset."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli_here
from PIL import Image

from toolkit.errors import BadSampleError, DataError
from toolkit_plugins.datasets.common import DataWarning
from toolkit_plugins.datasets.voc_dataset import VocDataset

BCCD = REPO.parent / "shared" / "datasets" / "bccd"


def _xml(*objects: tuple[str, int, int, int, int], filename: str | None = None, size: bool = True) -> str:
    parts = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
        f"<ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects
    )
    name = f"<filename>{filename}</filename>" if filename else ""
    dims = "<size><width>32</width><height>24</height></size>" if size else ""
    return f"<annotation>{name}{dims}{parts}</annotation>"


def _image(path: Path, suffix: str = ".jpg") -> Path:
    path = path.with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), (10, 200, 10)).save(path)
    return path


def _beside(folder: Path, count: int = 4, prefix: str = "im") -> Path:
    """`count` images with their XML beside them in one folder (labelImg's layout)."""
    for i in range(count):
        _image(folder / f"{prefix}{i}")
        name = "dog" if i % 2 else "cat"
        (folder / f"{prefix}{i}.xml").write_text(_xml((name, 2, 2, 10 + i, 12)))
    return folder


def _stems(dataset: VocDataset) -> list[str]:
    return [item["name"] for item in dataset.items]


def test_xml_files_beside_their_images(tmp_path: Path) -> None:
    root = _beside(tmp_path / "data")
    dataset = VocDataset(root=root)
    assert dataset.layout == "loose" and _stems(dataset) == ["im0", "im1", "im2", "im3"]
    assert dataset.class_names == ["cat", "dog"]  # class_names absent: the names found, sorted
    assert dataset[1][1]["labels"].tolist() == [1] and dataset[1][1]["boxes"].tolist() == [[1, 1, 11, 12]]
    assert [i["id"] for i in dataset.items] == [0, 1, 2, 3]
    assert VocDataset(root=root, class_names=["dog", "cat"])[1][1]["labels"].tolist() == [0]
    with pytest.raises(DataError, match="the whole folder is the train split"):
        VocDataset(root=root, split="val")


@pytest.mark.parametrize(
    ("xml_folder", "image_folder"), [("annotations", "images"), ("Annotations", "JPEGImages")]
)
def test_sibling_folders_without_imagesets(tmp_path: Path, xml_folder: str, image_folder: str) -> None:
    root = tmp_path / "data"
    for i, suffix in enumerate((".jpg", ".PNG", ".jpeg")):
        _image(root / image_folder / f"im{i}", suffix)
        (root / xml_folder).mkdir(parents=True, exist_ok=True)
        (root / xml_folder / f"im{i}.xml").write_text(_xml(("cat", 1, 1, 5, 5), size=False))
    dataset = VocDataset(root=root)
    assert [item["path"].name for item in dataset.items] == ["im0.jpg", "im1.PNG", "im2.jpeg"]
    assert all((item["width"], item["height"]) == (32, 24) for item in dataset.items)  # from the image header


def test_the_image_a_filename_names(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _image(root / "photos_001", ".png")
    (root / "a.xml").write_text(_xml(("cat", 1, 1, 5, 5), filename="some/where/photos_001.png"))
    (root / "b.xml").write_text(_xml(("cat", 1, 1, 5, 5)))  # no image b.*
    with pytest.raises(BadSampleError, match=r"b\.xml: no image b\.<jpg\|png\|\.\.\.> in "):
        VocDataset(root=root)
    with pytest.warns(DataWarning, match="skipped 1 "):
        dataset = VocDataset(root=root, on_bad_sample="skip")
    assert [item["path"].name for item in dataset.items] == ["photos_001.png"]


def test_split_file_glob_and_seeded_fraction(tmp_path: Path) -> None:
    root = _beside(tmp_path / "data", count=3, prefix="train_")
    _beside(root, count=2, prefix="val_")
    (root / "lists").mkdir()
    (root / "lists" / "val.txt").write_text("val_0\nval_1.xml\ntrain_0.jpg\n\nval_0\n")
    listed = VocDataset(root=root, split="val", split_file="lists/val.txt")
    assert _stems(listed) == ["val_0", "val_1", "train_0"]
    globbed = VocDataset(root=root, split="val", split_glob="val_*.xml")
    assert _stems(globbed) == ["val_0", "val_1"]
    everything = _stems(VocDataset(root=root))
    train = _stems(VocDataset(root=root, split="train", val_fraction=0.4, seed=3))
    val = _stems(VocDataset(root=root, split="val", val_fraction=0.4, seed=3))
    assert len(val) == 2 and sorted(train + val) == sorted(everything) and not set(train) & set(val)
    assert _stems(VocDataset(root=root, split="val", val_fraction=0.4, seed=3)) == val  # deterministic
    seeds = {tuple(_stems(VocDataset(root=root, split="val", val_fraction=0.4, seed=s))) for s in range(6)}
    assert len(seeds) > 1
    with pytest.raises(DataError, match="the split must be 'train' or 'val'"):
        VocDataset(root=root, split="test", val_fraction=0.4)
    with pytest.raises(DataError, match="give one of split_file, split_glob and val_fraction"):
        VocDataset(root=root, split_glob="*.xml", val_fraction=0.5)
    with pytest.raises(DataError, match=r"no XML files match 'test_\*\.xml'"):
        VocDataset(root=root, split_glob="test_*.xml")
    with pytest.raises(DataError, match="must be relative"):
        VocDataset(root=root, split_glob="../*.xml")


def test_split_options_on_a_standard_root_use_its_annotations(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    for i in range(2):
        _image(root / "JPEGImages" / f"x{i}")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"x{i}.xml").write_text(_xml(("cat", 1, 1, 5, 5)))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("x0\n")
    assert VocDataset(root=root).layout == "standard" and _stems(VocDataset(root=root)) == ["x0"]
    assert _stems(VocDataset(root=root, split_glob="x1.xml")) == ["x1"]


def test_paths_stay_under_the_root(tmp_path: Path) -> None:
    outside = _beside(tmp_path / "outside", count=1, prefix="secret")
    root = _beside(tmp_path / "data", count=1)
    (root / "list.txt").write_text("im0\n../outside/secret0\n")
    with pytest.raises(
        BadSampleError, match=r"list\.txt: line 2: the file name '\.\./outside/secret0\.xml' leaves"
    ):
        VocDataset(root=root, split_file="list.txt")
    with pytest.raises(DataError, match=r"split_file: the file name '\.\./list\.txt' leaves"):
        VocDataset(root=root, split_file="../list.txt")
    (root / "linked.xml").symlink_to(outside / "secret0.xml")  # an XML that is a link out
    with pytest.raises(BadSampleError, match=r"'linked\.xml' leads through a link to .*outside/secret0\.xml"):
        VocDataset(root=root)
    (root / "linked.xml").unlink()
    (root / "im1.xml").write_text(_xml(("cat", 1, 1, 5, 5)))
    (root / "im1.jpg").symlink_to(outside / "secret0.jpg")  # an image that is a link out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dataset = VocDataset(root=root, on_bad_sample="skip")
    assert _stems(dataset) == ["im0"] and "'im1.jpg' leads through a link" in dataset.skipped[0]


def test_cli_stats_and_preview_on_a_loose_voc_spec(tmp_path: Path) -> None:
    root = _beside(tmp_path / "data", count=4)
    (root / "im0.xml").write_text(_xml(("cat", 2, 2, 10, 12), ("dog", 30, 20, 40, 30), ("cat", 9, 9, 5, 5)))
    spec = yaml.safe_load((REPO / "configs/centernet_resnet18_shapes.yaml").read_text())
    spec["model"] |= {"class_names": ["cat", "dog"], "input_size": [64, 64]}
    spec["data"]["train"] = {"type": "voc", "root": str(root), "split": "train", "val_fraction": 0.25}
    spec["data"]["val"] = {"type": "voc", "root": str(root), "split": "val", "val_fraction": 0.25}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    stats = [
        json.loads(run_cli_here("data", "stats", str(path), "--json", "--split", s).stdout)
        for s in ("train", "val")
    ]
    assert [s["images"] for s in stats] == [3, 1]
    assert sum(s["dropped_boxes"] for s in stats) == 1 and sum(s["clipped_boxes"] for s in stats) == 1
    table = run_cli_here(
        "data", "stats", str(path), "--split", "train" if stats[0]["dropped_boxes"] else "val"
    )
    assert table.returncode == 0, table.stderr
    assert (
        "boxes dropped (zero-area, inverted or outside the image): 1, clipped to the image: 1" in table.stdout
    )
    assert "dropped 1 box" in table.stderr  # the dataset's warning
    preview = run_cli_here("data", "preview", str(path), "-n", "2", "-o", str(tmp_path / "p.png"))
    assert preview.returncode == 0, preview.stderr
    assert (tmp_path / "p.png").is_file()


@pytest.mark.skipif(not BCCD.is_dir(), reason="../shared/datasets/bccd is not here")
def test_bccd_loads_with_the_standard_layout() -> None:
    names = ["RBC", "WBC", "Platelets"]
    counts = {}
    for split in ("train", "val"):
        with pytest.warns(DataWarning, match="dropped 1 box .*zero-area or inverted"):
            dataset = VocDataset(root=BCCD, split=split, class_names=names)
        assert dataset.layout == "standard" and dataset.skipped == [] and dataset.class_names == names
        counts[split] = (len(dataset), dataset.dropped_boxes, dataset.clipped_boxes)
    assert counts == {"train": (205, 1, 0), "val": (87, 1, 0)}  # two point boxes (xmin == xmax)
    image, target = dataset[0]
    assert image.shape == (3, 480, 640) and len(target["boxes"]) > 0
