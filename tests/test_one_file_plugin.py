"""A backbone plugin in one file of at most 25 lines (examples/one_file/tiny_backbone.py, shown in
docs/plugins.md): typed parameters from its signature, then validated, trained, evaluated and
exported through the real CLI like any built-in."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import REPO, run_cli

FOLDER = REPO / "examples" / "one_file"
PLUGIN = FOLDER / "tiny_backbone.py"
SPEC = {
    "plugins": ["tiny_backbone"],
    "model": {
        "backbone": {"type": "tiny", "width": 16},
        "head": {"type": "centernet", "neck_channels": [16, 16, 16], "head_conv": 8},
        "input_size": 64,
        "class_names": ["circle", "square", "triangle"],
    },
    "data": {
        "train": {"type": "shapes", "length": 8, "image_size": 64, "seed": 0, "max_objects": 3},
        "val": {"type": "shapes", "length": 4, "image_size": 64, "seed": 1, "max_objects": 3},
        "batch_size": 4,
        "num_workers": 0,
    },
    "train": {"epochs": 1, "device": "cpu", "threads": 2, "plots": False},
}


def test_the_plugin_is_one_short_file_that_the_docs_show() -> None:
    text = PLUGIN.read_text()
    assert len(text.splitlines()) <= 25
    assert text.strip() in (REPO / "docs" / "plugins.md").read_text()


def test_a_one_file_backbone_validates_trains_evaluates_and_exports(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    listing = run_cli("-p", "tiny_backbone", "plugins", "--json", pythonpath=[FOLDER])
    assert listing.returncode == 0, listing.stderr
    tiny = next(c for c in json.loads(listing.stdout)["components"]["backbone"] if c["name"] == "tiny")
    assert tiny["params"]["properties"]["width"] == {
        "default": 32, "maximum": 512, "minimum": 8, "title": "Width", "type": "integer",
    }  # fmt: skip
    refused = run_cli("validate", str(spec), "model.backbone.width=4", pythonpath=[FOLDER])
    assert refused.returncode == 2 and "model.backbone.width" in refused.stderr, refused.stderr
    run = tmp_path / "run"
    trained = run_cli("train", str(spec), "--out", str(run), "--no-progress", pythonpath=[FOLDER])
    assert trained.returncode == 0, trained.stderr[-800:]
    checkpoint = str(run / "best.pt")
    evaluated = run_cli("eval", checkpoint, "--json", "--no-progress", pythonpath=[FOLDER])
    assert evaluated.returncode == 0, evaluated.stderr[-800:]
    assert 0.0 <= json.loads(evaluated.stdout)["AP"] <= 1.0
    exported = run_cli("export", checkpoint, "-o", str(tmp_path / "tiny.onnx"), pythonpath=[FOLDER])
    assert exported.returncode == 0, exported.stderr[-800:]
    assert "fp32 against torch" in exported.stdout and (tmp_path / "tiny.onnx").is_file()
