"""`toolkit eval`, `predict`, `export` and `attack` on a checkpoint whose spec named weights that are not
there any more (`pretrained: imagenet` without a network, or a weights file since deleted): the
checkpoint's own weights replace them, so nothing is fetched or read. Through the CLI's `main` in
this process, with every download made to fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import run_cli_here

#: any download goes to a closed port and fails at once
NO_NETWORK = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}


def checkpoint_naming(detector: dict[str, Path], folder: Path, pretrained: str) -> Path:
    """The detector's checkpoint with its spec's backbone `pretrained` set to `pretrained`."""
    saved = torch.load(detector["checkpoint"], weights_only=True)
    saved["spec"]["model"]["backbone"]["pretrained"] = pretrained
    path = folder / "best.pt"
    torch.save(saved, path)
    return path


@pytest.mark.parametrize("weights", ["imagenet", "deleted file"])
def test_checkpoint_commands_never_fetch_the_specs_pretrained_weights(
    detector: dict[str, Path], tmp_path: Path, weights: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if weights == "imagenet":
        pretrained = "imagenet"
    else:
        gone = tmp_path / "backbone_weights.pt"
        torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, gone)
        pretrained = str(gone)
        gone.unlink()  # moved or deleted since the run was trained
    checkpoint = str(checkpoint_naming(detector, tmp_path, pretrained))
    for key, value in {**NO_NETWORK, "TORCH_HOME": str(tmp_path / "torch_home")}.items():
        monkeypatch.setenv(key, value)
    commands = {
        "eval": ["eval", checkpoint, "--no-progress", "--json"],
        "predict": ["predict", checkpoint, str(detector["images"]), "--out", str(tmp_path / "predicted")],
        "export": ["export", checkpoint, "-o", str(tmp_path / "model.onnx")],
        "attack": [
            "attack", checkpoint, "attack.method.type=fgsm", "attack.max_images=2",
            "--out", str(tmp_path / "attack"), "--no-progress",
        ],
    }  # fmt: skip
    if weights != "imagenet":  # the same path through the resolver: one command shows it
        commands = {"eval": commands["eval"]}
    for name, args in commands.items():
        result = run_cli_here(*args)
        assert result.returncode == 0, (name, result.stderr[-800:])
        assert "pretrained" not in result.stderr, (name, result.stderr[-800:])
    assert not (tmp_path / "torch_home").exists()  # nothing was downloaded or cached
    if weights != "imagenet":
        return
    assert (tmp_path / "predicted" / "results_coco.json").is_file()
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "attack" / "attack.json").is_file()
