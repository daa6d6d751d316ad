"""`toolkit eval CKPT` evaluates a run's checkpoint with the spec it carries; SPEC --checkpoint agrees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from test_attack_cli import CLASSIFIER

import toolkit
from toolkit.cli import main
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

#: test_attack_cli's tiny classifier, without its attack section, on 16 / 12 images
SPEC = {
    "model": CLASSIFIER["model"],
    "data": {
        **CLASSIFIER["data"],
        "train": {**CLASSIFIER["data"]["train"], "length": 16},
        "val": {**CLASSIFIER["data"]["val"], "length": 12},
    },
    "train": {"epochs": 1, "device": "cpu", "threads": 2},
}


def test_eval_of_a_checkpoint_alone_uses_its_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both forms through the real command (subprocess); the variants in-process (`cli.main`)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    manager = PluginManager()
    toolkit.train(
        load_spec(spec, plugins=manager), out_dir=tmp_path / "run", plugins=manager, show_progress=False
    )
    checkpoint = tmp_path / "run" / "best.pt"
    alone = run_cli("eval", str(checkpoint), "--json", "--no-progress")
    assert alone.returncode == 0, alone.stderr
    with_spec = run_cli("eval", str(spec), "--checkpoint", str(checkpoint), "--json", "--no-progress")
    assert with_spec.returncode == 0, with_spec.stderr
    assert json.loads(alone.stdout) == json.loads(with_spec.stdout)
    assert json.loads(alone.stdout)["images"] == 12

    def in_process(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, "--no-progress"])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = in_process("eval", str(checkpoint), "data.val.length=5", "--json")
    assert code == 0 and json.loads(out)["images"] == 5, "overrides apply"
    code, _, err = in_process("eval", str(spec))
    assert code == 2 and "pass --checkpoint" in err
    code, _, err = in_process("eval", str(checkpoint), "--checkpoint", str(checkpoint))
    assert code == 2 and "not both" in err
