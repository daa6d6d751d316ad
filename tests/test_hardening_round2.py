"""Hardening, round two: what predict, export, train and attack did wrong without a word.

Each test here failed before its fix: results files that score against the dataset's own COCO file
as they are (checkpoint and ONNX alike, the same AP as `toolkit eval`), outputs that never replace
the user's files, NaN thresholds and images, 16-bit PIL images, ONNX metadata that contradicts its
graph or declares absurd sizes, short messages for mismatched checkpoints, the training summary
naming best.pt's figures, an ONNX file for `attack --onnx` checked before the attack.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from conftest import run_cli, run_cli_here
from detector_files import CATEGORY_IDS
from PIL import Image

from toolkit.build import Builder, load_model
from toolkit.data.images import read_image
from toolkit.data.writers import write_coco
from toolkit.engine.report import format_run_summary
from toolkit.engine.trainer import RunSummary
from toolkit.errors import ToolkitError
from toolkit.export.runtime import OnnxModel
from toolkit.plugins import PluginManager


def cli_main(*argv: str) -> tuple[int, str, str]:
    """`toolkit ARGV` in this process: (exit code, stdout, stderr)."""
    done = run_cli_here(*argv)
    return done.returncode, done.stdout, done.stderr


def coco_scores(ground_truth: Path, results: Path) -> tuple[float, float]:
    """(AP, AP50) of a results file against an annotation file, by pycocotools as it is."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(ground_truth))
        evaluation = COCOeval(truth, truth.loadRes(str(results)), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0]), float(evaluation.stats[1])


# -- COCO results that score as they are ----------------------------------------------------------
def test_results_coco_scores_against_the_datasets_own_file_as_toolkit_eval_does(
    detector: dict[str, Path], tmp_path: Path
) -> None:
    code, text, err = cli_main("eval", str(detector["checkpoint"]), "--json", "--no-progress")
    assert code == 0, err
    metrics = json.loads(text)
    assert 0.05 < metrics["AP50"] < 1.0, metrics  # neither nothing nor everything: it pins the ids
    onnx_file = tmp_path / "model.onnx"
    code, _, err = cli_main("export", str(detector["checkpoint"]), "-o", str(onnx_file))
    assert code == 0, err
    for name, model in (("checkpoint", detector["checkpoint"]), ("onnx", onnx_file)):
        out = tmp_path / name
        code, _, err = cli_main(
            "predict", str(model), str(detector["images"]), "--out", str(out), "--threshold", "0",
            "--coco-gt", str(detector["annotations"]),
        )  # fmt: skip
        assert code == 0, err
        ap, ap50 = coco_scores(detector["annotations"], out / "results_coco.json")
        assert ap == pytest.approx(metrics["AP"], abs=1e-6), name
        assert ap50 == pytest.approx(metrics["AP50"], abs=1e-6), name


def test_a_checkpoint_writes_the_datasets_category_ids_like_its_onnx_export(
    detector: dict[str, Path], tmp_path: Path
) -> None:
    for model in (detector["checkpoint_ids"], detector["onnx"]):
        out = tmp_path / model.suffix.strip(".")
        code, _, err = cli_main(
            "predict", str(model), str(detector["images"]), "--out", str(out), "--threshold", "0"
        )
        assert code == 0, err
        coco = json.loads((out / "results_coco.json").read_text())
        assert coco and {d["category_id"] for d in coco} <= set(CATEGORY_IDS)
    assert load_model(detector["checkpoint_ids"]).category_ids == CATEGORY_IDS
    assert load_model(detector["checkpoint"]).category_ids is None  # recorded by runs from now on


def test_coco_gt_names_what_does_not_match(detector: dict[str, Path], tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.png"
    Image.new("RGB", (20, 20)).save(stranger)
    code, _, err = cli_main(
        "predict", str(detector["checkpoint"]), str(stranger), "--coco-gt", str(detector["annotations"])
    )
    assert code == 2 and "1 of the 1 images are not in its 'images' list" in err and "stranger.png" in err
    other = tmp_path / "other.json"
    document = json.loads(detector["annotations"].read_text())
    document["categories"] = [{"id": 1, "name": "dog"}]
    other.write_text(json.dumps(document))
    code, _, err = cli_main(
        "predict", str(detector["checkpoint"]), str(detector["images"]), "--coco-gt", str(other)
    )
    assert code == 2 and "'circle'" in err and "['dog']" in err


def test_data_export_keeps_the_datasets_category_ids(
    detector: dict[str, Path], manager: PluginManager
) -> None:
    from toolkit.build import Builder
    from toolkit.spec import load_spec

    spec = load_spec(detector["spec"], plugins=manager)
    dataset = Builder(manager).dataset(spec, "val")
    out = write_coco(dataset, detector["spec"].parent / "exported")
    document = json.loads((out / "annotations" / "instances.json").read_text())
    assert [c["id"] for c in document["categories"]] == CATEGORY_IDS
    original = json.loads(detector["annotations"].read_text())
    assert sorted(a["category_id"] for a in document["annotations"]) == sorted(
        a["category_id"] for a in original["annotations"]
    )


# -- never overwrite what the toolkit did not write ------------------------------------------------
def test_predict_never_overwrites_the_input_images(detector: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "photos"
    source.mkdir()
    for path in detector["images"].iterdir():
        (source / path.name).write_bytes(path.read_bytes())
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    code, _, err = cli_main("predict", str(detector["checkpoint"]), str(source), "--out", str(source))
    assert code == 2 and "would overwrite 4 existing file(s)" in err and "holds the input images" in err
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before


def test_predict_replaces_only_its_own_files(detector: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    for _ in range(2):  # the second run replaces what the first wrote
        code, _, err = cli_main(
            "predict", str(detector["checkpoint"]), str(detector["images"]), "--out", str(out)
        )
        assert code == 0, err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "im1.png").write_bytes(b"my own drawing")
    code, _, err = cli_main(
        "predict", str(detector["checkpoint"]), str(detector["images"]), "--out", str(mine)
    )
    assert code == 2 and "im1.png" in err and "not files the toolkit wrote" in err
    assert (mine / "im1.png").read_bytes() == b"my own drawing" and sorted(os_names(mine)) == ["im1.png"]


def os_names(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir()]


def test_train_exist_ok_keeps_the_users_files(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("my measurements\n")
    (folder / "notes.txt").write_text("kept")
    spec = tmp_path / "spec.yaml"
    spec.write_text("model: {}\n")  # never read: the folder is refused first
    result = run_cli("train", str(spec), "--out", str(folder), "--exist-ok")
    assert result.returncode == 2 and "would overwrite 1 of them (metrics.jsonl)" in result.stderr
    assert (folder / "metrics.jsonl").read_text() == "my measurements\n"


def test_export_refuses_a_file_it_did_not_write_and_keeps_the_old_export_when_verification_fails(
    detector: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"someone else's model")
    code, _, err = cli_main("export", str(detector["checkpoint"]), "-o", str(foreign))
    assert code == 2 and "is not a toolkit export" in err and foreign.read_bytes() == b"someone else's model"

    target = tmp_path / "model.onnx"
    target.write_bytes(detector["onnx"].read_bytes())  # an earlier export: may be replaced
    code, text, err = cli_main("export", str(detector["checkpoint"]), "-o", str(target), "--no-verify")
    assert code == 0 and "replaced the earlier export" in text, err
    earlier = target.read_bytes()

    import toolkit.export.verify as verify

    class Failed:
        passed = False

        def table(self) -> str:
            return "(made to fail)"

    monkeypatch.setattr(verify, "verify_export", lambda *a, **k: Failed())
    code, _, err = cli_main("export", str(detector["checkpoint"]), "-o", str(target))
    assert code == 2 and "verification failed" in err
    assert target.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.onnx", "model.onnx"]  # no temp left


# -- values that gave empty or wrong results -------------------------------------------------------
def test_nan_thresholds_and_nan_images_are_refused(detector: dict[str, Path]) -> None:
    model = load_model(detector["checkpoint"])
    image = torch.rand(3, 32, 32)
    for bad in (math.nan, -0.1, 1.5, math.inf):
        with pytest.raises(ToolkitError, match="score threshold must be a number in \\[0, 1\\]"):
            model.predict(image, score_threshold=bad)
    onnx_model = OnnxModel(detector["onnx"], builder=Builder(PluginManager()), provider="cpu")
    with pytest.raises(ToolkitError, match="score threshold"):
        onnx_model.predict(image, score_threshold=math.nan)
    image[0, 3, 3] = math.nan
    with pytest.raises(ToolkitError, match="NaN or infinite"):
        model.predict(image)
    code, _, err = cli_main(
        "predict", str(detector["checkpoint"]), str(detector["images"]), "--threshold", "nan"
    )
    assert code == 2 and "--threshold must be a number in [0, 1], got nan" in err


def test_a_16_bit_pil_image_predicts_as_its_file_does(detector: dict[str, Path], tmp_path: Path) -> None:
    ramp = (np.arange(40 * 64, dtype=np.uint32).reshape(40, 64) * 25).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as pil:
        assert pil.mode.startswith("I")
        model = load_model(detector["checkpoint"])
        from_pil = model.predict(pil)[0]
    from_file = model.predict(str(path))[0]
    decoded = read_image(path)
    assert 0 < int(decoded.float().mean()) < 255  # not clipped to white
    from toolkit.inference import as_image

    with Image.open(path) as pil:
        assert torch.equal(as_image(pil, 0), decoded)
    torch.testing.assert_close(from_pil["scores"], from_file["scores"])


def edited(detector: dict[str, Path], folder: Path, name: str, **changes: str) -> Path:
    proto = onnx.load(str(detector["onnx"]))
    for entry in proto.metadata_props:
        if entry.key in changes:
            entry.value = changes[entry.key]
    path = folder / f"{name}.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"toolkit.class_names": "[]"}, "must list 1 to"),
        ({"toolkit.input_size": "[1000000000, 1000000000]"}, "outside [8, 4096]"),
        ({"toolkit.input_size": "[96, 96]"}, "contradicts its graph"),
        ({"toolkit.outputs": '["boxes"]'}, "contradicts its graph"),
        ({"toolkit.category_ids": "[1, 2]"}, "are not 3 distinct integers"),
    ],
    ids=["no classes", "absurd size", "size vs graph", "outputs vs graph", "ids"],
)
def test_onnx_metadata_that_contradicts_the_file_is_refused(
    detector: dict[str, Path], tmp_path: Path, changes: dict[str, str], words: str
) -> None:
    path = edited(detector, tmp_path, "edited", **changes)
    with pytest.raises(
        ToolkitError, match=r"damaged toolkit metadata|contradicts its graph|distinct"
    ) as info:
        OnnxModel(path, builder=Builder(PluginManager()), provider="cpu")
    assert words in str(info.value) and len(str(info.value)) < 400


def test_attack_onnx_of_another_input_size_is_refused_before_the_attack(
    detector: dict[str, Path], manager: PluginManager, tmp_path: Path
) -> None:
    from toolkit.checkpoints import resolve_target
    from toolkit.commands.attack import run_attack_command

    loaded = resolve_target(detector["checkpoint"], None, ["model.input_size=96"], builder=Builder(manager))
    model, spec = loaded.model, loaded.spec
    out = tmp_path / "attack"
    with pytest.raises(ToolkitError, match=r"its input is \[64, 64\], the checkpoint's \[96, 96\]"):
        run_attack_command(
            spec, model, out, Builder(manager), onnx_path=detector["onnx"], show_progress=False
        )
    assert not (out / "attack.json").exists()


def test_a_mismatched_checkpoint_gets_a_short_message(detector: dict[str, Path], tmp_path: Path) -> None:
    spec = json.loads(detector["spec"].read_text())
    spec["model"]["backbone"]["type"] = "resnet50"
    other = tmp_path / "resnet50.json"
    other.write_text(json.dumps(spec))
    code, _, err = cli_main("eval", str(other), "--checkpoint", str(detector["checkpoint"]), "--no-progress")
    assert code == 2, err
    assert len(err) < 700 and "198 weight(s) missing" in err and "24 weight(s) of another shape" in err, err


def test_a_spec_error_in_a_checkpoints_own_spec_names_the_checkpoint(
    detector: dict[str, Path], tmp_path: Path
) -> None:
    saved = torch.load(detector["checkpoint"], weights_only=True)
    saved["spec"]["data"]["batch_size"] = -3
    broken = tmp_path / "broken.pt"
    torch.save(saved, broken)
    code, _, err = cli_main("eval", str(broken), "--no-progress")
    assert code == 2 and f"checkpoint {broken}" in err and "<dict>" not in err, err


def test_the_training_summary_names_best_pt_and_the_last_epoch() -> None:
    summary = RunSummary(
        out_dir="run", epochs=5, steps=50, best_metric="AP50", best_value=0.5324,
        metric_names=("AP50", "AP"), final_metrics={"AP50": 0.4931, "AP": 0.2},
        best_metrics={"AP50": 0.5324, "AP": 0.25}, best_epoch=3,
    )  # fmt: skip
    text = format_run_summary(summary)
    best, last = text.index("best.pt (epoch 3)"), text.index("last epoch (5, last.pt)")
    assert best < text.index("0.5324", best) < last < text.index("0.4931", last)


def test_attack_json_records_the_attacks_type_and_parameters(
    detector: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "attack"
    code, _, err = cli_main(
        "attack", str(detector["checkpoint"]), "attack.method={type: fgsm, eps: 0.01}", "attack.max_images=2",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    report: dict[str, Any] = json.loads((out / "attack.json").read_text())
    assert report["attack"]["type"] == "fgsm" and report["attack"]["eps"] == 0.01


# -- small things ----------------------------------------------------------------------------------
def test_plugins_json_lists_the_core_parameters_too() -> None:
    code, text, _ = cli_main("plugins", "--json")
    resnet = next(c for c in json.loads(text)["components"]["backbone"] if c["name"] == "resnet18")
    pretrained = json.dumps(resnet["params"]["properties"]["pretrained"])
    assert code == 0 and "file" in pretrained.lower() and "type" not in resnet["params"]["properties"]


def test_plugins_names_a_plugin_slow_to_import(tmp_path: Path) -> None:
    (tmp_path / "slow_plugin.py").write_text("import time\ntime.sleep(1.2)\n")
    result = run_cli("-p", "slow_plugin", "plugins", pythonpath=[tmp_path])
    assert result.returncode == 0, result.stderr
    assert "slow_plugin: importing it takes 1." in result.stdout


def test_predict_folders_take_gifs_and_a_fifo_is_named_for_what_it_is(
    detector: dict[str, Path], tmp_path: Path
) -> None:
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (30, 20), (200, 10, 10)).save(folder / "anim.gif")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    code, text, _ = cli_main("predict", str(detector["checkpoint"]), str(folder), str(fifo))
    assert code == 2 and "anim.gif: boxes" in text
    assert "pipe.png: cannot read: not a regular file" in text and "annotations" not in text


def test_attack_and_eval_outputs_never_replace_the_users_files(
    detector: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "examples.png").write_bytes(b"my picture")
    (folder / "figure.png").write_bytes(b"my figure")
    code, _, err = cli_main("attack", str(detector["checkpoint"]), "--out", str(folder), "--no-progress")
    assert code == 2 and "examples.png" in err and "not files the toolkit wrote" in err
    code, _, err = cli_main("eval", str(detector["checkpoint"]), "--out", str(folder), "--no-progress")
    assert code == 2 and "figure.png" in err
    assert (folder / "examples.png").read_bytes() == b"my picture" and sorted(os_names(folder)) == [
        "examples.png", "figure.png"
    ]  # fmt: skip
    out = tmp_path / "eval"
    for _ in range(2):  # its own files: replaced by the next run
        code, _, err = cli_main("eval", str(detector["checkpoint"]), "--out", str(out), "--no-progress")
        assert code == 0, err
    assert (out / "metrics.json").is_file()
