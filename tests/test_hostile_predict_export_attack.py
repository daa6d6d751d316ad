"""Hostile inputs to predict, export and attack: image files, ONNX files, attack parameters and
output places, each through the real `toolkit.cli.main` (all cases in one watched subprocess).

Every refused case exits 2 with one `toolkit: error:` line and no traceback; an unreadable image
is one `cannot read` line among the results (exit 2, the others predicted); a readable oddity
(CMYK, 16-bit, palette, RGBA, GIF, EXIF-rotated, 1x1, 10000x10) is predicted. Nothing is written
outside the `--out` folders of the cases that succeed, and nothing there is overwritten.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from detector_files import build_detector_files
from hostile_assertions import changes, snapshot
from hostile_runner import Case, Result, assert_refused, run_cases
from PIL import Image

from toolkit.build import load_model
from toolkit.export.onnx_export import export_onnx
from toolkit.plugins import PluginManager


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares width x height and whose data is a few bytes (a bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def write_odd_images(folder: Path) -> dict[str, Path]:
    """One file per quirk; the key says whether it must be readable."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    files: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **options: object) -> None:
        files[name] = folder / name
        image.save(files[name], **options)

    save("cmyk.jpg", Image.fromarray(pixels).convert("CMYK"))
    save("deep.png", Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257))
    save("palette.png", Image.fromarray(pixels).convert("P"))
    save("rgba.png", Image.fromarray(np.dstack([pixels, pixels[:, :, :1]]), mode="RGBA"))
    save("anim.gif", Image.fromarray(pixels))
    save("one.png", Image.fromarray(pixels[:1, :1]))
    save("strip.png", Image.fromarray(np.zeros((10, 10000, 3), dtype=np.uint8)))
    exif = Image.Exif()
    exif[0x0112] = 6  # shot sideways
    save("rotated.jpg", Image.fromarray(pixels), exif=exif)
    bad = {
        "bomb.png": None,
        "truncated.jpg": None,
        "text.png": b"these are not pixels\n",
        "empty.jpg": b"",
    }
    png_header_only(folder / "bomb.png", 100_000, 100_000)
    whole = folder / "whole.jpg"
    Image.fromarray(pixels).save(whole)
    (folder / "truncated.jpg").write_bytes(whole.read_bytes()[:200])
    whole.unlink()
    for name, content in bad.items():
        if content is not None:
            (folder / name).write_bytes(content)
        files[f"bad:{name}"] = folder / name
    os.mkfifo(folder / "fifo.png")
    files["bad:fifo.png"] = folder / "fifo.png"
    return files


def write_odd_onnx_files(folder: Path, real: Path, other_size: Path) -> dict[str, Path]:
    folder.mkdir()
    data = real.read_bytes()
    files = {"truncated": folder / "truncated.onnx", "random": folder / "random.onnx"}
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["random"].write_bytes(np.random.default_rng(1).bytes(4096))
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "unrelated",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
    )
    files["unrelated"] = folder / "unrelated.onnx"
    onnx.save(onnx.helper.make_model(graph), str(files["unrelated"]))
    edits = {
        "no_classes": {"toolkit.class_names": "[]"},
        "classes_not_json": {"toolkit.class_names": "circle, square"},
        "absurd_size": {"toolkit.input_size": "[1000000000, 1000000000]"},
        "size_vs_graph": {"toolkit.input_size": "[128, 128]"},
        "outputs_vs_graph": {"toolkit.outputs": '["boxes"]'},
        "huge_multiple": {"toolkit.input_multiple": "99999999999"},
    }
    for name, change in edits.items():
        proto = onnx.load(str(real))
        for entry in proto.metadata_props:
            entry.value = change.get(entry.key, entry.value)
        files[name] = folder / f"{name}.onnx"
        onnx.save(proto, str(files[name]))
    proto = onnx.load(str(real))
    tensor = proto.graph.initializer[0]
    length = len(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../../outside.bin"), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    files["external_outside"] = folder / "external_outside.onnx"
    onnx.save(proto, str(files["external_outside"]))
    (folder.parent / "outside.bin").write_bytes(b"\0" * length)  # a file it must not be read from
    files["other_size"] = other_size
    return files


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    manager = PluginManager()
    root = tmp_path_factory.mktemp("hostile_world")
    files = build_detector_files(root / "detector", manager)
    model = load_model(files["checkpoint"])
    model.input_size = (32, 32)
    other_size = root / "detector" / "at32.onnx"
    export_onnx(model, other_size, spec={"model": {}})
    return {
        **files,
        "root": root,
        **{f"image:{k}": v for k, v in write_odd_images(root / "odd").items()},
        **{f"onnx:{k}": v for k, v in write_odd_onnx_files(root / "onnx", files["onnx"], other_size).items()},
    }


def test_hostile_predict_export_attack(world: dict[str, Path]) -> None:
    root, checkpoint = world["root"], str(world["checkpoint"])
    one_image = str(world["images"] / "im0.png")
    work = root / "work"
    work.mkdir()
    foreign = work / "foreign.onnx"
    foreign.write_bytes(b"not mine")
    existing = work / "existing.txt"
    existing.write_text("mine")
    cases: dict[str, Case] = {}
    expected: dict[str, list[str]] = {}
    readable: dict[str, str] = {}
    unreadable: dict[str, tuple[str, str]] = {}

    # image files
    for key, path in world.items():
        if not key.startswith("image:"):
            continue
        name = key.removeprefix("image:")
        out = f"out_{path.stem}"
        cases[f"image {name}"] = Case(["predict", checkpoint, str(path), one_image, "--out", out])
        if name.startswith("bad:"):
            reason = {
                "bomb.png": "exceeds the pixel limit",
                "truncated.jpg": "truncated or corrupt",
                "text.png": "not a readable image",
                "empty.jpg": "not a readable image",
                "fifo.png": "not a regular file",
            }[name.removeprefix("bad:")]
            unreadable[f"image {name}"] = (path.name, reason)
        else:
            readable[f"image {name}"] = out

    # ONNX files
    onnx_words = {
        "truncated": ["cannot read", "as an ONNX file"],
        "random": ["cannot read", "as an ONNX file"],
        "unrelated": ["no toolkit metadata"],
        "no_classes": ["damaged toolkit metadata", "class names"],
        "classes_not_json": ["damaged toolkit metadata"],
        "absurd_size": ["damaged toolkit metadata", "outside [8, 4096]"],
        "size_vs_graph": ["contradicts its graph"],
        "outputs_vs_graph": ["contradicts its graph"],
        "huge_multiple": ["damaged toolkit metadata", "input_multiple"],
        "external_outside": ["onnxruntime cannot open"],
    }
    for name, words in onnx_words.items():
        path = str(world[f"onnx:{name}"])
        cases[f"onnx {name}"] = Case(["predict", path, one_image, "--out", f"out_onnx_{name}"])
        expected[f"onnx {name}"] = [Path(path).name, *words]
    cases["onnx attack transfer of another size"] = Case(
        [
            "attack",
            checkpoint,
            "--onnx",
            str(world["onnx:other_size"]),
            "--out",
            "attack_other",
            "--no-progress",
        ]
    )
    expected["onnx attack transfer of another size"] = ["--onnx", "its input is [32, 32]"]
    cases["onnx a folder"] = Case(["predict", str(root / "onnx" / "dir.onnx"), one_image])
    (root / "onnx" / "dir.onnx").mkdir()
    expected["onnx a folder"] = ["dir.onnx"]

    # attack parameters
    attacks = {
        "eps below 0": ("attack.method={type: pgd, eps: -0.1}", ["attack.method", "eps"]),
        "eps above 1": ("attack.method={type: fgsm, eps: 1.5}", ["attack.method", "eps"]),
        "steps 0": ("attack.method={type: pgd, steps: 0}", ["steps"]),
        "steps 10^9": ("attack.method={type: pgd, steps: 1000000000}", ["steps"]),
        "unknown target class": ("attack.method={type: pgd, target_class: zebra}", ["zebra"]),
        "patch area 0": ("attack.method={type: patch, area: 0}", ["area"]),
        "patch area 1.5": ("attack.method={type: patch, area: 1.5}", ["area"]),
        "unknown attack": ("attack.method={type: pdg}", ["pdg", "did you mean"]),
        "max_images -1": ("attack.max_images=-1", ["max_images"]),
    }
    for name, (override, words) in attacks.items():
        cases[f"attack {name}"] = Case(
            ["attack", checkpoint, override, "--out", "attack_bad", "--no-progress"]
        )
        expected[f"attack {name}"] = words

    # output places
    places = {
        "predict into its source folder": (
            ["predict", checkpoint, str(world["images"]), "--out", str(world["images"])],
            ["would overwrite", "holds the input images"],
        ),
        "predict --out an existing file": (
            ["predict", checkpoint, one_image, "--out", str(existing)],
            ["--out"],
        ),
        "predict --out in /proc": (
            ["predict", checkpoint, one_image, "--out", "/proc/toolkit_out"],
            ["/proc"],
        ),
        "predict --threshold nan": (["predict", checkpoint, one_image, "--threshold", "nan"], ["nan"]),
        "predict --threshold 1.5": (["predict", checkpoint, one_image, "--threshold", "1.5"], ["[0, 1]"]),
        "predict --batch 0": (["predict", checkpoint, one_image, "--batch", "0"], ["--batch"]),
        "predict --coco-gt missing": (
            ["predict", checkpoint, one_image, "--coco-gt", "missing.json"],
            ["--coco-gt", "not found"],
        ),
        "predict --coco-gt not COCO": (
            ["predict", checkpoint, one_image, "--coco-gt", str(existing)],
            ["--coco-gt", "JSON"],
        ),
        "predict --coco-gt other images": (
            ["predict", checkpoint, str(world["image:one.png"]), "--coco-gt", str(world["annotations"])],
            ["one.png", "not in its 'images' list"],
        ),
        "export -o a file it did not write": (
            ["export", checkpoint, "-o", str(foreign)],
            ["not a toolkit export"],
        ),
        "export -o in /proc": (["export", checkpoint, "-o", "/proc/model.onnx"], ["/proc"]),
        "export -o a folder": (["export", checkpoint, "-o", str(work)], ["folder"]),
        "attack --out an existing file": (["attack", checkpoint, "--out", str(existing)], ["--out"]),
        "attack --out in /proc": (["attack", checkpoint, "--out", "/proc/attack"], ["/proc"]),
        "eval --out in /proc": (["eval", checkpoint, "--out", "/proc/eval"], ["/proc"]),
    }
    for name, (argv, words) in places.items():
        cases[name] = Case(argv)
        expected[name] = words

    assert len(cases) >= 40, len(cases)
    before = snapshot(root)
    results = run_cases(cases, work, timeout=900)
    after = snapshot(root)

    for name, words in expected.items():
        assert_refused(results[name], words)
    for name, (file_name, reason) in unreadable.items():
        assert_unreadable_reported(results[name], file_name, reason)
    for name, out in readable.items():
        result = results[name]
        assert result.code == 0 and "Traceback" not in result.stderr, f"{name}: {result.stderr[-2000:]}"
        drawn = sorted(p.name for p in (work / out).glob("*.png"))
        assert len(drawn) == 2, f"{name}: {drawn}"
    allowed = ["work/cases.json", *(f"work/{out}" for out in readable.values())]
    allowed += [f"work/out_{Path(file_name).stem}" for file_name, _ in unreadable.values()]
    assert changes(before, after, allowed=allowed) == []


def assert_unreadable_reported(result: Result, file_name: str, reason: str) -> None:
    shown = f"exit {result.code}\nstdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
    assert result.code == 2 and "Traceback" not in result.stderr, shown
    lines = [line for line in result.stdout.splitlines() if "cannot read" in line]
    assert len(lines) == 1 and file_name in lines[0] and reason in lines[0], shown
    assert "1 images predicted, 1 failed" in result.stdout, shown
