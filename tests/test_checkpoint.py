"""Checkpoints: a process killed with SIGKILL while saving never leaves an unreadable file."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from toolkit.checkpoints import load_checkpoint
from toolkit.engine.saving import save_atomic
from toolkit.errors import ToolkitError

SAVER = """
import sys, torch
from toolkit.engine.saving import save_atomic
path = sys.argv[1]
state = {"model": {"w": torch.randn(4_000_000)}, "step": 0}
print("ready", flush=True)
step = 0
while True:
    step += 1
    state["step"] = step
    state["model"]["w"].fill_(float(step))
    save_atomic(state, path)
"""


def test_sigkill_while_saving_leaves_a_readable_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_atomic({"model": {"w": torch.zeros(4)}, "step": 0}, path)
    generator = random.Random(0)
    steps = []
    for _ in range(6):
        process = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        time.sleep(generator.uniform(0.05, 0.6))  # lands inside torch.save most of the time
        process.send_signal(signal.SIGKILL)
        process.wait()
        checkpoint = load_checkpoint(path)  # never torn
        step = int(checkpoint["step"])
        assert step == 0 or float(checkpoint["model"]["w"][0]) == step
        steps.append(step)
    assert max(steps) > 0, "the saver never completed a save: the test proved nothing"
    leftovers = list(tmp_path.glob(".last.pt.*.tmp"))
    save_atomic({"model": {}, "step": -1}, path)
    assert not list(tmp_path.glob(".last.pt.*.tmp")), f"stale temp files kept: {leftovers}"


def test_unreadable_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ToolkitError, match="cannot read checkpoint"):
        load_checkpoint(path)
    with pytest.raises(ToolkitError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
