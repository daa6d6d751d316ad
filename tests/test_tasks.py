"""Tasks are plugins: a third task (object counting, tests/plugin_fixtures/fixture_counting.py) trains,
evaluates and predicts through the real CLI; the core holds no task-name comparisons."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURE_PLUGINS, REPO, run_cli

COUNTING = {
    "plugins": ["fixture_tiny", "fixture_counting"],
    "model": {
        "backbone": {"type": "tiny", "width": 16},
        "head": {"type": "count_head"},
        "input_size": 64,
        "class_names": ["circle", "square", "triangle"],
    },
    "data": {
        "train": {"type": "shapes", "length": 48, "image_size": 64, "seed": 0, "max_objects": 4},
        "val": {"type": "shapes", "length": 16, "image_size": 64, "seed": 1, "max_objects": 4},
        "augment": [{"type": "hflip"}, {"type": "resize"}],
        "batch_size": 8,
        "num_workers": 0,
    },
    "train": {
        "epochs": 3,
        "optimizer": {"type": "adamw", "lr": 0.01},
        "device": "cpu",
        "threads": 1,
        "log_interval": 2,
    },
}


@pytest.fixture(scope="module")
def counting_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("counting")
    spec = directory / "counting.yaml"
    spec.write_text(yaml.safe_dump(COUNTING))
    result = run_cli("train", str(spec), "--out", str(directory / "run"), pythonpath=[FIXTURE_PLUGINS])
    assert result.returncode == 0, result.stderr
    assert "best MAE" in result.stdout and "count_accuracy" in result.stdout
    return spec, directory / "run"


def validation_records(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "val"]


def test_a_third_task_trains_through_the_cli(counting_run: tuple[Path, Path]) -> None:
    _, run = counting_run
    validation = validation_records(run)
    assert [r["epoch"] for r in validation] == [1, 2, 3]
    assert all({"MAE", "count_accuracy", "images"} <= set(r["metrics"]) for r in validation)
    assert validation[-1]["metrics"]["images"] == 16
    best = min(r["metrics"]["MAE"] for r in validation)  # lower is better: best.pt holds the minimum
    import torch

    assert torch.load(run / "best.pt", weights_only=True)["best_value"] == pytest.approx(best)


def test_a_third_task_evaluates_through_the_cli(counting_run: tuple[Path, Path]) -> None:
    spec, run = counting_run
    result = run_cli(
        "eval", str(spec), "--checkpoint", str(run / "last.pt"), "--json", pythonpath=[FIXTURE_PLUGINS]
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    final = validation_records(run)[-1]["metrics"]
    assert metrics["MAE"] == pytest.approx(final["MAE"])
    assert metrics["count_accuracy"] == pytest.approx(final["count_accuracy"])
    table = run_cli("eval", str(spec), "--checkpoint", str(run / "last.pt"), pythonpath=[FIXTURE_PLUGINS])
    assert [line.split()[0] for line in table.stdout.splitlines()[2:4]] == ["count_accuracy", "MAE"]


def test_a_third_task_predicts_through_the_cli(counting_run: tuple[Path, Path], tmp_path: Path) -> None:
    from PIL import Image

    from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

    _, run = counting_run
    dataset = ShapesDataset(length=2, image_size=80, seed=7, max_objects=4)
    paths = []
    for index in range(2):
        path = tmp_path / f"image{index}.png"
        Image.fromarray(dataset[index][0].permute(1, 2, 0).numpy()).save(path)
        paths.append(str(path))
    out = tmp_path / "predictions"
    result = run_cli(
        "predict", str(run / "best.pt"), *paths, "--json", "--out", str(out), pythonpath=[FIXTURE_PLUGINS]
    )
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["image"] for r in records] == paths
    assert all(isinstance(r["count"], float) and r["count"] >= 0 for r in records)
    assert json.loads((out / "predictions.json").read_text()) == records
    assert (out / "image0.png").is_file() and (out / "image1.png").is_file()
    plain = run_cli("predict", str(run / "best.pt"), paths[0], pythonpath=[FIXTURE_PLUGINS])
    assert plain.returncode == 0 and plain.stdout.startswith(f"{paths[0]}: count: ")


TASK_NAMES = {"detection", "classification", "counting"}
CORE = [*(REPO / "toolkit" / "engine").rglob("*.py"), *(REPO / "toolkit" / "data").rglob("*.py")]
CORE.append(REPO / "toolkit" / "cli.py")


def task_name_comparisons(path: Path) -> list[str]:
    """Comparisons (==, !=, in, match) and dict keys that use a task name as a string constant."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        constants: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            constants = [node.left, *node.comparators]
            constants += [
                e for c in node.comparators if isinstance(c, (ast.Tuple, ast.List, ast.Set)) for e in c.elts
            ]
        elif isinstance(node, ast.Dict):
            constants = [key for key in node.keys if key is not None]
        elif isinstance(node, ast.MatchValue):
            constants = [node.value]
        for constant in constants:
            if isinstance(constant, ast.Constant) and constant.value in TASK_NAMES:
                found.append(f"{path.name}:{constant.lineno}: {constant.value!r}")
    return found


def test_the_core_flows_hold_no_task_name_comparisons() -> None:
    assert len(CORE) > 10
    found = [hit for path in CORE for hit in task_name_comparisons(path)]
    assert not found, found


def test_the_comparison_finder_finds_them(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        'if task == "detection":\n    pass\nx = {"classification": 1}\nok = "counting" in names\n'
    )
    assert len(task_name_comparisons(sample)) == 3


def test_data_stats_of_a_task_without_dataset_stats_count_the_ground_truth(tmp_path: Path) -> None:
    """The counting task does not say how to count its datasets (no `CountsDatasets`): `data stats`
    counts the boxes of the dataset's ground truth, as the detection task would."""
    from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

    spec = {**COUNTING, "data": {**COUNTING["data"], "train": {"type": "counted_shapes", "length": 8}}}
    path = tmp_path / "counted.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run_cli("data", "stats", str(path), "--json", pythonpath=[FIXTURE_PLUGINS])
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    truth = ShapesDataset(length=8, image_size=64, seed=0).ground_truth()
    assert stats["task"] == "counting" and stats["images"] == 8
    assert sum(c["objects"] for c in stats["classes"].values()) == len(truth["annotations"]) > 8
