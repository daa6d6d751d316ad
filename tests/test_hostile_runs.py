"""Hostile input, class 3 of issue 12: runs that cannot clobber each other.

Real CLI processes throughout: a folder that is not a run is refused (unless --exist-ok), a run is
never overwritten without --resume, a folder locked by a live run is refused whatever the flags,
two trainings on one --out leave the first intact, and a SIGKILL at every point of every save
(best.pt and last.pt, before and after each rename) leaves a consistent run that --resume
finishes exactly as an uninterrupted run would.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FIXTURE_PLUGINS, run_cli
from hostile_assertions import changes, error_line, snapshot

from toolkit.checkpoints import load_checkpoint
from toolkit.engine.saving import save_atomic

SPEC = {
    "plugins": ["fixture_tiny"],
    "model": {
        "backbone": {"type": "tiny", "width": 8},
        "head": {"type": "classification", "dropout": 0.0},
        "input_size": 64,
        "class_names": ["absent", "present"],
    },
    "data": {
        "train": {"type": "shapes", "task": "classification", "length": 8, "image_size": 64, "seed": 0},
        "val": {"type": "shapes", "task": "classification", "length": 8, "image_size": 64, "seed": 1},
        "augment": [{"type": "hflip"}, {"type": "resize"}],
        "batch_size": 4,
        "num_workers": 0,
    },
    "train": {
        "epochs": 2,
        "optimizer": {"type": "sgd", "lr": 0.05},
        "schedule": {"type": "constant"},
        "log_interval": 1,
        "device": "cpu",
        "threads": 1,
    },
}
MARKER = ".toolkit-run.lock"


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLKIT_")}
    env["PYTHONPATH"] = str(FIXTURE_PLUGINS)
    return env


def cli(*args: str, cwd: Path):  # type: ignore[no-untyped-def]
    return run_cli(*args, cwd=cwd, pythonpath=[FIXTURE_PLUGINS], timeout=240)


def write_spec(directory: Path, spec: dict = SPEC) -> Path:
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One uninterrupted run (spec, run folder); tests must leave it as it is."""
    directory = tmp_path_factory.mktemp("reference")
    spec = write_spec(directory)
    result = cli("train", str(spec), "--out", str(directory / "run"), "--no-progress", cwd=directory)
    assert result.returncode == 0, result.stderr
    return spec, directory / "run"


# -- what may be written where ----------------------------------------------------------------
def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("the user's own metrics\n")
    (folder / "spec.yaml").write_text("mine: true\n")
    before = snapshot(tmp_path)
    result = cli("train", str(spec), "--out", str(folder), cwd=tmp_path)
    error_line(result, str(folder), "not a toolkit run", "metrics.jsonl, spec.yaml", "--exist-ok")
    assert changes(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("exists", [True, False], ids=["not a run", "missing"])
def test_resume_needs_a_run(tmp_path: Path, exists: bool) -> None:
    spec = write_spec(tmp_path)
    folder = tmp_path / "results"
    if exists:
        folder.mkdir()
        (folder / "notes.txt").write_text("notes\n")
    before = snapshot(tmp_path)
    result = cli("train", str(spec), "--out", str(folder), "--resume", cwd=tmp_path)
    error_line(result, "--resume", str(folder / "last.pt"), "not found")
    assert changes(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("flags", [[], ["--exist-ok"]], ids=["plain", "exist-ok"])
def test_a_run_is_never_overwritten(reference: tuple[Path, Path], flags: list[str]) -> None:
    spec, run = reference
    before = snapshot(run)
    result = cli("train", str(spec), "--out", str(run), *flags, cwd=run.parent)
    error_line(result, str(run), "already holds a run (last.pt)", "--resume")
    assert changes(before, snapshot(run)) == []


def test_a_run_without_checkpoint_restarts_only_when_asked(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    for name, text in ((MARKER, "pid 1\n"), ("spec.yaml", "old\n"), ("metrics.jsonl", '{"kind": "train"}\n')):
        (run / name).write_text(text)
    before = snapshot(tmp_path)
    result = cli("train", str(spec), "--out", str(run), cwd=tmp_path)
    error_line(result, str(run), "saved no checkpoint", "--resume or --exist-ok")
    assert changes(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("flags", [[], ["--resume"], ["--exist-ok"]], ids=["plain", "resume", "exist-ok"])
def test_a_folder_locked_by_a_live_run_is_refused(
    reference: tuple[Path, Path], tmp_path: Path, flags: list[str]
) -> None:
    spec, run = reference
    with open(run / MARKER, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a live run holds
        before = snapshot(run)
        result = cli("train", str(spec), "--out", str(run), *flags, cwd=tmp_path)
        error_line(result, str(run), "in use by another training run", "--out")
        assert changes(before, snapshot(run)) == []


def test_a_failed_setup_leaves_no_folder_behind(tmp_path: Path) -> None:
    spec = dict(SPEC, data={**SPEC["data"], "train": {"type": "image_folder", "root": str(tmp_path / "no")}})
    path = write_spec(tmp_path, spec)
    before = snapshot(tmp_path)
    result = cli("train", str(path), "--out", str(tmp_path / "new" / "run"), cwd=tmp_path)
    error_line(result, str(tmp_path / "no"))
    assert changes(before, snapshot(tmp_path)) == []


def test_exist_ok_writes_into_a_folder_with_the_users_umask(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me\n")
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "train", str(spec), "--out", str(folder), "--exist-ok",
         "--no-progress", "train.epochs=1"],
        capture_output=True, text=True, cwd=tmp_path, env=environment(), umask=0o027, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (folder / "notes.txt").read_text() == "keep me\n"
    for name in ("last.pt", "best.pt", "spec.yaml", "metrics.jsonl"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o640, name
    assert not list(folder.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("logger", "mine"),
    [
        ({"type": "csv", "filename": "table.csv"}, "table.csv"),
        ({"type": "jsonl", "filename": "log/m.jsonl"}, "log"),
    ],
    ids=["file", "in-folder"],
)
def test_exist_ok_refuses_a_logger_file_the_user_had(tmp_path: Path, logger: dict, mine: str) -> None:
    """A logger's own file name (not one of the run's fixed names) that the folder already holds is
    refused before anything is written; a logger file that is new in the user's subfolder is not."""
    spec = write_spec(tmp_path)
    folder = tmp_path / "results"
    (folder / "log").mkdir(parents=True)
    (folder / "table.csv").write_text("my table\n")
    (folder / "log" / "m.jsonl").write_text("my log\n")
    before = snapshot(folder)
    overrides = [f"train.loggers=[{json.dumps(logger)}]", "train.epochs=1"]
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "train", str(spec), "--out", str(folder), "--exist-ok",
         "--no-progress", *overrides],
        capture_output=True, text=True, cwd=tmp_path, env=environment(), timeout=240,
    )  # fmt: skip
    relative = logger["filename"]
    error_line(result, "train.loggers.0", f"would write {relative}", "the toolkit did not write", "--out")
    assert changes(before, snapshot(folder)) == [], "the folder must be left as it was"

    (folder / "log" / "m.jsonl").unlink()  # the subfolder stays the user's; a new file in it is fine
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "train", str(spec), "--out", str(folder), "--exist-ok",
         "--no-progress", *overrides],
        capture_output=True, text=True, cwd=tmp_path, env=environment(), timeout=240,
    )  # fmt: skip
    if mine == "log":
        assert result.returncode == 0, result.stderr
        assert (folder / "log" / "m.jsonl").is_file() and (folder / "table.csv").read_text() == "my table\n"
    else:
        assert result.returncode == 2 and (folder / "table.csv").read_text() == "my table\n"


# -- two trainings on one --out ------------------------------------------------------------------
PAUSE_AT_FIRST_SAVE = """
import os, sys
real_replace = os.replace
paused = []
def replace(source, target, *args, **kwargs):
    if str(target).endswith(".pt") and not paused:  # holding the run's lock, about to save
        paused.append(True)
        print("paused", flush=True)
        sys.stdin.readline()
    return real_replace(source, target, *args, **kwargs)
os.replace = replace
from toolkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_second_training_on_one_out_is_refused_and_the_first_finishes_intact(tmp_path: Path) -> None:
    first_spec = write_spec(tmp_path)
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-c", PAUSE_AT_FIRST_SAVE, "train", str(first_spec), "--out", str(run),
         "--no-progress"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env=environment(),
    )  # fmt: skip
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "paused"
        other = tmp_path / "other"
        other.mkdir()
        second_spec = write_spec(other, {**SPEC, "train": {**SPEC["train"], "seed": 7}})
        for flags in ([], ["--resume"], ["--exist-ok"]):
            second = cli("train", str(second_spec), "--out", str(run), *flags, cwd=other)
            error_line(second, str(run), "in use by another training run", f"pid {first.pid}")
        _, err = first.communicate("\n", timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert yaml.safe_load((run / "spec.yaml").read_text())["train"]["seed"] == 0, "the first run's spec"
    assert [r["step"] for r in records(run, "train")] == [1, 2, 3, 4]
    assert [r["epoch"] for r in records(run, "val")] == [1, 2]
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 4


def test_temp_cleanup_spares_live_writers(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live_temp = tmp_path / f".last.pt.{live.pid}.abc.tmp"
        dead_temp = tmp_path / f".last.pt.{dead.pid}.def.tmp"
        for temp in (live_temp, dead_temp):
            temp.write_bytes(b"half written")
        save_atomic({"model": {}}, target)
        assert live_temp.exists(), "a live writer's temp file was removed"
        assert not dead_temp.exists(), "a dead writer's temp file was kept"
    finally:
        live.kill()
        live.wait()


# -- SIGKILL at every point of a save ------------------------------------------------------------
KILL_AT_SAVE_POINT = """
import os, signal, sys
real_replace = os.replace
kill_at = int(sys.argv[1])
points = []
def point(where):
    points.append(where)
    if len(points) == kill_at:
        sys.stderr.write(f"KILLED {where}\\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
def replace(source, target, *args, **kwargs):
    name = os.path.basename(str(target))
    if not name.endswith(".pt"):
        return real_replace(source, target, *args, **kwargs)
    point(f"before {name}")  # the temp file is written and fsynced, not renamed yet
    real_replace(source, target, *args, **kwargs)
    point(f"after {name}")  # renamed, the folder not yet fsynced, stale temp files not removed
os.replace = replace
from toolkit.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _assert_consistent(run: Path) -> int:
    """Every checkpoint readable; last.pt never records a best value best.pt does not hold.
    Returns last.pt's epoch (0 without last.pt)."""
    for path in run.glob("*.pt"):
        load_checkpoint(path)  # never torn
    for line in (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []:
        json.loads(line)
    if not (run / "last.pt").exists():
        return 0
    last = torch.load(run / "last.pt", weights_only=True)
    if last["best_value"] is not None:
        assert (run / "best.pt").exists(), "last.pt records a best value but there is no best.pt"
        best = torch.load(run / "best.pt", weights_only=True)
        assert best["best_value"] >= last["best_value"], "best.pt holds worse weights than last.pt records"
    return int(last["epoch"])


def test_a_kill_at_every_save_point_leaves_a_run_that_resume_finishes(
    reference: tuple[Path, Path], tmp_path: Path
) -> None:
    spec, expected = reference
    run = tmp_path / "run"
    killed_at: list[str] = []
    kill_at, epoch = 1, 0
    for _ in range(20):
        flags = ["--resume"] if run.exists() else []
        process = subprocess.run(
            [sys.executable, "-c", KILL_AT_SAVE_POINT, str(kill_at), "train", str(spec), "--out", str(run),
             "--no-progress", *flags],
            capture_output=True, text=True, cwd=tmp_path, env=environment(), timeout=240,
        )  # fmt: skip
        if process.returncode == 0:
            break
        assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
        killed_at.append(f"epoch {epoch + 1}: " + process.stderr.split("KILLED ")[-1].strip())
        reached = _assert_consistent(run)
        kill_at, epoch = (1, reached) if reached > epoch else (kill_at + 1, epoch)
    else:
        pytest.fail(f"the run never finished: {killed_at}")
    improved_again = torch.load(expected / "best.pt", weights_only=True)["epoch"] == 2
    points = ["before best.pt", "after best.pt", "before last.pt", "after last.pt"]
    assert killed_at == [f"epoch 1: {p}" for p in points] + [
        f"epoch 2: {p}" for p in points if improved_again or "last" in p
    ]

    def steps(folder: Path) -> list[tuple]:
        return [(r["epoch"], r["step"], r["lr"], r["loss"]) for r in records(folder, "train")]

    assert steps(run) == steps(expected)
    assert [r["metrics"] for r in records(run, "val")] == [r["metrics"] for r in records(expected, "val")]
    for name in ("last.pt", "best.pt"):
        got, want = (torch.load(d / name, weights_only=True) for d in (run, expected))
        assert (got["epoch"], got["best_value"]) == (want["epoch"], want["best_value"]), name
        for key, value in want["model"].items():
            assert torch.equal(got["model"][key], value), (name, key)
    assert not list(run.glob(".*.tmp")), "stale temp files left"
