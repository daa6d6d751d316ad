"""Hostile input, class 2 of issue 12: every user mistake takes one clean error path.

Each case runs the real CLI in a subprocess and asserts exit code 2, one `toolkit: error:` line
naming the file or field, no traceback, and nothing written outside the places the command names:
bad samples whatever the number of DataLoader workers, output places that cannot be written,
exceptions inside plugin factories and components, plugins that call sys.exit, ImageNet weights
without a network, checkpoints of the wrong structure or classes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import FIXTURE_PLUGINS, run_cli
from hostile_assertions import changes, error_line, snapshot
from PIL import Image

CLASSES = ["absent", "present"]


def classifier_spec(data: dict | None = None, *, workers: int = 0, **model: object) -> dict:
    """A tiny classifier on `shapes` (nothing on disk) unless `data` says otherwise."""
    spec = {
        "plugins": ["fixture_tiny", "fixture_hostile"],
        "model": {
            "backbone": {"type": "tiny", "width": 8},
            "head": {"type": "classification"},
            "input_size": 64,
            "class_names": CLASSES,
            **model,
        },
        "data": {
            "train": {"type": "shapes", "task": "classification", "length": 8, "image_size": 64},
            "augment": [{"type": "resize"}],
            "batch_size": 4,
            "num_workers": workers,
            **(data or {}),
        },
        "train": {"epochs": 1, "device": "cpu", "threads": 1},
    }
    return spec


def write(directory: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(spec))
    return path


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return run_cli(*args, cwd=cwd, env=env, pythonpath=[FIXTURE_PLUGINS], timeout=240)


# -- a bad sample: the same message whatever the number of workers -------------------------------
def image_folder_with_a_corrupt_image(root: Path) -> Path:
    generator = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for index in range(3):
            array = generator.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(array).save(root / name / f"{index}.png")
    (root / "present" / "9_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


@pytest.fixture(scope="module")
def corrupt_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_folder_with_a_corrupt_image(tmp_path_factory.mktemp("folder") / "images")


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_a_bad_sample_is_one_clean_error_whatever_the_workers(
    corrupt_folder: Path, tmp_path: Path, workers: int
) -> None:
    data = {"train": {"type": "image_folder", "root": str(corrupt_folder)}}
    spec = write(tmp_path, classifier_spec(data, workers=workers))
    result = cli("train", str(spec), "--out", str(tmp_path / "run"), "--no-progress", cwd=tmp_path)
    line = error_line(result, "9_corrupt.png", "not a readable image")
    assert line.endswith("replace or remove the file"), line
    assert "DataLoader worker" not in result.stderr


def test_eval_with_workers_reports_a_bad_sample_cleanly(corrupt_folder: Path, tmp_path: Path) -> None:
    data = {"val": {"type": "image_folder", "root": str(corrupt_folder)}}
    spec = write(tmp_path, classifier_spec(data, workers=2))
    from toolkit.build import build_model
    from toolkit.plugins import PluginManager
    from toolkit.spec import load_spec

    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FIXTURE_PLUGINS))
        manager = PluginManager()
        loaded = load_spec(spec, plugins=manager)
        model = build_model(loaded, plugins=manager)
    checkpoint = tmp_path / "weights.pt"
    torch.save({"model": model.state_dict(), "spec": loaded.model_dump(mode="json")}, checkpoint)
    before = snapshot(tmp_path)
    result = cli("eval", str(spec), "--checkpoint", str(checkpoint), "--no-progress", cwd=tmp_path)
    error_line(result, "9_corrupt.png", "not a readable image")
    assert changes(before, snapshot(tmp_path)) == []


# -- output places: checked first, reported in one line, nothing written --------------------------
OUTPUT_CASES = {
    # name: (argv with {spec} {file} {dir}, words the error names)
    "train --out a file": (["train", "{spec}", "--out", "{file}"], ["--out", "is a file"]),
    "train --out under a file": (["train", "{spec}", "--out", "{file}/run"], ["--out", "is a file"]),
    "train --out under /proc": (["train", "{spec}", "--out", "/proc/toolkit-hostile/run"], ["--out"]),
    "schema -o a folder": (["schema", "-o", "{dir}"], ["-o", "is a folder"]),
    "schema -o under /proc": (["schema", "-o", "/proc/toolkit-hostile/schema.json"], ["-o", "/proc"]),
    "preview -o a folder": (["data", "preview", "{spec}", "-o", "{dir}"], ["-o", "is a folder"]),
    "stats -o a folder": (["data", "stats", "{spec}", "-o", "{dir}"], ["-o", "is a folder"]),
    "data export to a file": (["data", "export", "{spec}", "{file}"], ["is a file"]),
    "eval --out a file": (
        ["eval", "{spec}", "--checkpoint", "{file}", "--out", "{file}"],
        ["--out", "is a file"],
    ),
    "predict --out a file": (["predict", "{file}", "{dir}", "--out", "{file}"], ["--out", "is a file"]),
    "export -o a folder": (["export", "{file}", "-o", "{dir}"], ["-o", "is a folder"]),
}


@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_output_places_are_checked_first(case: str, tmp_path: Path) -> None:
    argv, needles = OUTPUT_CASES[case]
    spec = write(tmp_path, classifier_spec())
    existing_file = tmp_path / "notes.txt"
    existing_file.write_text("the user's own file\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep\n")
    values = {"spec": str(spec), "file": str(existing_file), "dir": str(folder)}
    args = [arg.format(**values) for arg in argv]
    before = snapshot(tmp_path)
    result = cli(*args, cwd=tmp_path)
    error_line(result, *needles)
    assert changes(before, snapshot(tmp_path)) == []
    assert not Path("/proc/toolkit-hostile").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_train_into_a_read_only_folder_is_refused_first(tmp_path: Path) -> None:
    spec = write(tmp_path, classifier_spec())
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = cli("train", str(spec), "--out", str(locked / "run"), cwd=tmp_path)
    error_line(result, "--out", "not writable")


# -- exceptions inside plugin factories and components ---------------------------------------------
COMPONENT_CASES = {
    # name: (command, spec changes, words the error names)
    "backbone factory raises": (
        "build",
        {"model": {"backbone": {"type": "raising_backbone"}}},
        ["model.backbone", "backbone 'raising_backbone'", "fixture_hostile", "ValueError: width must be"],
    ),
    "backbone declares out_channels -5": (
        "build",
        {"model": {"backbone": {"type": "negative_channels"}}},
        ["backbone 'negative_channels'", "fixture_hostile", "out_channels is -5, not a positive int"],
    ),
    "backbone declares stride '32'": (
        "build",
        {"model": {"backbone": {"type": "string_stride"}}},
        ["backbone 'string_stride'", "stride is '32', not a positive int"],
    ),
    "backbone declares a zero-stride level": (
        "build",
        {"model": {"backbone": {"type": "zero_stride_levels"}}},
        ["backbone 'zero_stride_levels'", "levels is [(8, 0)]"],
    ),
    "head factory raises": (
        "build",
        {"model": {"head": {"type": "raising_head"}}},
        ["model.head", "head 'raising_head'", "fixture_hostile", "RuntimeError: cannot build the head"],
    ),
    "torchvision refuses an augmentation's arguments": (
        "data preview",
        {"data": {"augment": [{"type": "rotation", "degrees": -5.0}, {"type": "resize"}]}},
        ["data.augment.0", "augmentation 'rotation'", "fixture_hostile", "ValueError", "degrees"],
    ),
    "an augmentation raises while applied": (
        "data preview",
        {"data": {"augment": [{"type": "raising_augmentation"}, {"type": "resize"}]}},
        ["augmentation 'raising_augmentation'", "fixture_hostile", "sample 0", "IndexError"],
    ),
    "a dataset raises in a worker": (
        "train",
        {"data": {"train": {"type": "raising_dataset"}, "num_workers": 2}},
        ["dataset 'raising_dataset'", "fixture_hostile", "reading sample", "KeyError"],
    ),
    "a loss raises in training": (
        "train",
        {"train": {"loss": {"type": "raising_loss"}}},
        ["loss 'raising_loss'", "fixture_hostile", "at step 1 (epoch 1)", "RuntimeError: shape mismatch"],
    ),
}


def merged(spec: dict, changes_: dict) -> dict:
    """`spec` updated with `changes_`, section by section; a component (a dict with a type) replaces."""
    for key, value in changes_.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict) and "type" not in value:
            merged(spec[key], value)
        else:
            spec[key] = value
    return spec


@pytest.mark.parametrize("case", list(COMPONENT_CASES))
def test_component_failures_name_the_component_and_plugin(case: str, tmp_path: Path) -> None:
    command, spec_changes, needles = COMPONENT_CASES[case]
    spec = write(tmp_path, merged(classifier_spec(), spec_changes))
    extra = {"train": ["--out", str(tmp_path / "run"), "--no-progress"], "data preview": ["-o", "p.png"]}
    before = snapshot(tmp_path)
    result = cli(*command.split(), str(spec), *extra.get(command, []), cwd=tmp_path)
    contract = any("not a positive int" in n or "levels is" in n for n in needles)
    error_line(result, *needles, *([] if contract else ["TOOLKIT_DEBUG=1"]))
    allowed = ["run"] if command == "train" else []
    assert changes(before, snapshot(tmp_path), allowed=allowed) == []


def test_toolkit_debug_shows_the_plugin_traceback(tmp_path: Path) -> None:
    spec = write(tmp_path, merged(classifier_spec(), {"model": {"backbone": {"type": "raising_backbone"}}}))
    result = cli("build", str(spec), cwd=tmp_path, env={"TOOLKIT_DEBUG": "1"})
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "fixture_hostile.py" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("toolkit: error: model.backbone: backbone")


# -- plugins that call sys.exit -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("plugin", "words"),
    [
        ("fixture_exit_at_import", "failed to import: it called sys.exit(3)"),
        ("fixture_exit_at_register", "failed to register: it called sys.exit('no GPU found, giving up')"),
    ],
)
def test_a_plugin_calling_sys_exit_is_a_failed_plugin(plugin: str, words: str, tmp_path: Path) -> None:
    result = cli("-p", plugin, "plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert "resnet18" in result.stdout, "the other plugins keep working"
    strict = cli("-p", plugin, "plugins", cwd=tmp_path, env={"TOOLKIT_STRICT_PLUGINS": "1"})
    error_line(strict, plugin, words, "TOOLKIT_STRICT_PLUGINS is set")


# -- ImageNet weights without a network ----------------------------------------------------------
def test_imagenet_weights_offline_say_how_to_give_a_local_file(tmp_path: Path) -> None:
    offline = {
        "TORCH_HOME": str(tmp_path / "torch_home"),  # an empty cache: nothing to find there
        "HTTPS_PROXY": "http://127.0.0.1:9",  # refused at once: the test never waits for a network
        "https_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "no_proxy": "",
    }
    spec = write(tmp_path, classifier_spec(backbone={"type": "resnet18", "pretrained": "imagenet"}))
    result = cli("build", str(spec), cwd=tmp_path, env=offline)
    line = error_line(result, "resnet18", "IMAGENET1K_V1", also=("Downloading: ",))
    assert "pretrained: /path/to/resnet18-" in line and ".pth" in line
    assert "download.pytorch.org" in line
    assert not list((tmp_path / "torch_home").rglob("*.pth")), "no partial weights left in the cache"


# -- checkpoints of the wrong structure or classes -------------------------------------------------
@pytest.fixture(scope="module")
def model_state() -> dict[str, torch.Tensor]:
    """The weights of the tiny classifier (built in this process: no training needed)."""
    from toolkit.build import build_model
    from toolkit.plugins import PluginManager

    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FIXTURE_PLUGINS))
        manager = PluginManager(modules=["fixture_tiny"])
        model = build_model({"model": classifier_spec()["model"]}, plugins=manager)
        return model.state_dict()


def _saved_spec(**model: object) -> dict:
    spec = classifier_spec()
    spec["model"].update(model)
    return spec


CHECKPOINT_CASES = {
    # name: (command, checkpoint content or bytes, words the error names)
    "eval: model entry is an int": ("eval", {"model": 1}, ["'model' entry is a int, not a state dict"]),
    "eval: a list, not a checkpoint": ("eval", [1, 2, 3], ["is not a toolkit checkpoint"]),
    "eval: garbage bytes": ("eval", b"\x80\x02 not a pickle", ["cannot read checkpoint"]),
    "eval: other class names": (
        "eval",
        "STATE+OTHER_CLASSES",
        ["was trained with class_names ['cat', 'dog']", "['absent', 'present']", "spec.yaml"],
    ),
    "resume: weights without a spec": ("resume", "STATE", ["--resume", "not a run checkpoint", "'spec'"]),
    "resume: spec without a model section": (
        "resume",
        "STATE+SPEC_WITHOUT_MODEL",
        ["--resume", "not a run checkpoint", "spec (no 'model' section)"],
    ),
    "resume: epoch is a string": ("resume", "STATE+STRING_EPOCH", ["--resume", "epoch (str)"]),
    "predict: spec plugins is not a list": (
        "predict",
        "STATE+PLUGINS_STRING",
        ["'plugins' entry is 'fixture_tiny', not a list"],
    ),
}


def checkpoint_content(kind: object, state: dict[str, torch.Tensor]) -> object:
    if not isinstance(kind, str):
        return kind
    training = {
        "model": state,
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {},
        "scaler": {},
        "epoch": 1,
        "step": 2,
        "rng": {},
        "spec": _saved_spec(),
    }
    return {
        "STATE": {"model": state},
        "STATE+OTHER_CLASSES": {"model": state, "spec": _saved_spec(class_names=["cat", "dog"])},
        "STATE+SPEC_WITHOUT_MODEL": {**training, "spec": {"data": {}}},
        "STATE+STRING_EPOCH": {**training, "epoch": "three"},
        "STATE+PLUGINS_STRING": {"model": state, "spec": {**_saved_spec(), "plugins": "fixture_tiny"}},
    }[kind]


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_checkpoints_of_the_wrong_structure_are_named(
    case: str, tmp_path: Path, model_state: dict[str, torch.Tensor]
) -> None:
    command, kind, needles = CHECKPOINT_CASES[case]
    spec = write(tmp_path, classifier_spec())
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = run / "last.pt"
    content = checkpoint_content(kind, model_state)
    if isinstance(content, bytes):
        checkpoint.write_bytes(content)
    else:
        torch.save(content, checkpoint)
    argv = {
        "eval": ["eval", str(spec), "--checkpoint", str(checkpoint)],
        "resume": ["train", str(spec), "--out", str(run), "--resume", "--no-progress"],
        "predict": ["predict", str(checkpoint), str(tmp_path / "photo.png")],
    }[command]
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    before = snapshot(tmp_path)
    result = cli(*argv, cwd=tmp_path)
    error_line(result, str(checkpoint) if command != "resume" else "last.pt", *needles)
    # a refused resume leaves the run as it was (its lock file is the only addition)
    assert changes(before, snapshot(tmp_path), allowed=["run/.toolkit-run.lock"]) == []
