"""`toolkit attack` end to end through the real CLI: report, examples, sweep, patch, detector,
transfer to the exported ONNX model, and the user mistakes (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

CLASSIFIER = {
    "model": {
        "backbone": {"type": "resnet18", "pretrained": "none"},
        "head": {"type": "classification"},
        "input_size": 32,
        "class_names": ["absent", "present"],
    },
    "data": {
        "train": {
            "type": "shapes",
            "task": "classification",
            "length": 32,
            "image_size": 32,
            "seed": 0,
            "target": "circle",
        },
        "val": {
            "type": "shapes",
            "task": "classification",
            "length": 16,
            "image_size": 32,
            "seed": 1,
            "target": "circle",
        },
        "augment": [{"type": "resize"}],
        "batch_size": 8,
        "num_workers": 0,
    },
    "train": {"epochs": 1, "optimizer": {"type": "adamw", "lr": 0.001}, "device": "cpu", "threads": 2},
    "attack": {"method": {"type": "pgd", "eps": 0.0314, "steps": 3}, "examples": 3},
}


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("attack")
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(CLASSIFIER))
    result = run_cli("train", str(spec), "--out", str(folder / "run"), "--no-progress")
    assert result.returncode == 0, result.stderr
    return folder / "run" / "best.pt"


def _report(out: Path) -> dict:
    return json.loads((out / "attack.json").read_text())


def test_attack_reports_clean_and_adversarial_metrics(classifier_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "pgd"
    result = run_cli("attack", str(classifier_run), "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    report = _report(out)
    assert report["images"] == 16 and report["objective"] == "untargeted"
    assert 0.0 <= report["adversarial"]["accuracy"] <= report["clean"]["accuracy"] <= 1.0
    assert 0 < report["linf_max"] <= 0.0314 + 1e-6, "the perturbation stays in the eps ball"
    assert 0.0 <= report["success_rate"] <= 1.0 and report["success_counted"] <= 16
    assert (out / "examples.png").is_file() and "success rate" in result.stdout
    evaluation = run_cli(
        "eval", str(classifier_run.parent / "spec.yaml"), "--checkpoint", str(classifier_run), "--json"
    )
    assert evaluation.returncode == 0, evaluation.stderr
    assert report["clean"]["accuracy"] == pytest.approx(json.loads(evaluation.stdout)["accuracy"])


def test_a_sweep_writes_metric_against_eps(classifier_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = run_cli(
        "attack", str(classifier_run), "attack.method={type: fgsm}", "--sweep", "eps=0,4/255",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = _report(out)
    eps0, eps4 = report["sweep"]
    assert eps0["eps"] == 0.0 and eps4["eps"] == pytest.approx(4 / 255)
    assert eps0["adversarial"]["accuracy"] == pytest.approx(eps0["clean"]["accuracy"]), (
        "eps 0 changes nothing"
    )
    assert eps0["linf_max"] == 0.0 and eps4["linf_max"] <= 4 / 255 + 1e-6
    assert (out / "sweep.png").is_file()


def test_a_patch_is_fitted_saved_and_measured(classifier_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "patch"
    result = run_cli(
        "attack", str(classifier_run), "--out", str(out), "--no-progress",
        "attack.method={type: patch, area: 0.1, steps: 4, target_class: present}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = _report(out)
    assert report["objective"] == "targeted" and report["target_class"] == "present"
    assert report["patch_pixels"] == [10, 10] and report["patch_fraction"] == pytest.approx(100 / 1024)
    from PIL import Image

    assert Image.open(out / "patch.png").size == (10, 10)


def test_transfer_to_the_exported_model(classifier_run: Path, tmp_path: Path) -> None:
    onnx = tmp_path / "model.onnx"
    exported = run_cli("export", str(classifier_run), "-o", str(onnx))
    assert exported.returncode == 0, exported.stderr
    out = tmp_path / "transfer"
    result = run_cli("attack", str(classifier_run), "--onnx", str(onnx), "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    report = _report(out)
    assert report["onnx_adversarial"]["accuracy"] == pytest.approx(
        report["adversarial"]["accuracy"], abs=1 / 16
    )
    assert "adversarial (onnx)" in result.stdout


def test_a_detector_under_the_vanishing_attack(tmp_path: Path) -> None:
    spec = {
        "model": {
            "backbone": {"type": "resnet18", "pretrained": "none"},
            "head": {"type": "centernet", "skips": True, "neck_channels": [16, 16, 16], "head_conv": 16},
            "input_size": 64,
            "class_names": ["circle", "square", "triangle"],
        },
        "data": {
            "train": {"type": "shapes", "length": 8, "image_size": 64, "seed": 0, "max_objects": 3},
            "val": {"type": "shapes", "length": 4, "image_size": 64, "seed": 1, "max_objects": 3},
            "augment": [{"type": "resize"}],
            "batch_size": 4,
            "num_workers": 0,
        },
        "attack": {
            "method": {"type": "pgd", "eps": 0.0314, "steps": 2},
            "examples": 2,
            "score_threshold": 0.0,
        },
    }
    path = tmp_path / "detector.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    result = run_cli("attack", str(path), "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    report = _report(out)
    assert report["objective"] == "vanishing" and {"AP", "AP50"} <= set(report["adversarial"])
    assert (out / "examples.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attack.method.target_class=dog"], "'dog' is not a class of the model"),
        (["attack.method.objective=vanishing"], "attack objective 'vanishing' is not one of"),
        (["--sweep", "eps=1/0"], "--sweep 'eps=1/0'"),
        (["--sweep", "eps"], "expected NAME=V1,V2"),
        (["--sweep", "epsilon=0,1"], "epsilon"),
        (["attack.method.type=pdg"], "unknown attack 'pdg' (did you mean pgd?)"),
        (["--onnx", "missing.onnx"], "--onnx 'missing.onnx' not found"),
        (["attack=null"], "no attack section"),
    ],
)
def test_user_mistakes_are_one_line(
    classifier_run: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_cli("attack", str(classifier_run), *args, "--out", str(tmp_path / "out"), "--no-progress")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3
