"""Attack goals of the attack issue, measured in one run; prints JSON.

- `pgd_step_cost`: one PGD step (forward + backward to the images, parameters frozen) against one
  training forward + backward of the same model and batch, median of alternating rounds. Goal: ratio
  <= 1.2. Always measured (a ResNet-18 classifier at --size, batch --batch).
- `classifier` (needs the fine-tuning demo's model: `--classifier CKPT`, default the best model that
  OUT/finetune/results.json names): PGD-10 at eps 8/255 success on the correctly classified held-out
  images (goal >= 0.90); an adversarial patch covering 10 % of the image (full size, upright, at
  random places), fitted on the training split, targeted success on held-out images, one patch per
  target class (goal >= 0.80).
- `detector` (needs the detection demo's model: `--detector CKPT`, default OUT/detection/best.pt):
  vanishing PGD-10 at eps 8/255, relative AP50 drop (goal >= 0.80); the untargeted objective's drop
  alongside.
- `adversarial_training` (with `--adversarial-training`; trains two classifiers with the demo recipe):
  robust accuracy at 4/255 and 8/255 (PGD-10) and clean accuracy, with and without
  `train.adversarial`. Goals: robust accuracy at 4/255 up >= 0.30, clean accuracy down <= 0.10.

A part whose model is missing is reported as skipped with the command that makes it.

Held-out images are `--images` evenly spaced over the validation split (every class of a split
sorted by class).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from toolkit.attacks.objectives import attack_mode, input_gradient
from toolkit.attacks.run import attack_data, build_attack, objective_of, run_attack_on
from toolkit.build import Builder, build_model
from toolkit.checkpoints import resolve_target
from toolkit.contracts import FitsOnData
from toolkit.engine.trainer import train
from toolkit.plugins import PluginManager
from toolkit.spec import Spec, load_spec

REPO = Path(__file__).resolve().parents[1]
EPS8, EPS4 = 8 / 255, 4 / 255
PATCH = {"area": 0.1, "scale": [1.0, 1.0], "rotation": 0.0, "steps": 300}


def pgd_step_cost(size: int, batch: int, rounds: int, plugins: PluginManager) -> dict[str, Any]:
    spec = load_spec(
        {
            "model": {
                "backbone": {"type": "resnet18", "pretrained": "none"},
                "head": {"type": "classification"},
                "input_size": size,
                "class_names": ["absent", "present"],
            }
        },
        plugins=plugins,
    )
    model = build_model(spec, plugins=plugins)
    loss_fn = Builder(plugins).loss(spec, model)
    images = torch.rand((batch, 3, size, size), generator=torch.Generator().manual_seed(0))
    targets = {"label": torch.arange(batch) % 2}

    def train_step() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        loss_fn(model(images), targets)["loss"].backward()

    def attack_step() -> None:
        with attack_mode(model):
            input_gradient(model, images, targets, objective="untargeted", target_class=None)

    timings: dict[str, list[float]] = {"train": [], "attack": []}
    for _ in range(2):  # warm-up
        train_step()
        attack_step()
    for _ in range(rounds):
        for name, step in (("train", train_step), ("attack", attack_step)):
            started = time.perf_counter()
            step()
            timings[name].append(time.perf_counter() - started)
    forward_backward = statistics.median(timings["train"]) * 1000
    pgd = statistics.median(timings["attack"]) * 1000
    ratio = pgd / forward_backward
    return {
        "input": size,
        "batch": batch,
        "forward_backward_ms": round(forward_backward, 2),
        "pgd_step_ms": round(pgd, 2),
        "ratio": round(ratio, 3),
        "goal": "<= 1.2",
        "met": ratio <= 1.2,
    }


def _attack(
    spec: Spec, model: Any, method: dict[str, Any], *, plugins: PluginManager, images: int
) -> dict[str, Any]:
    spec = spec.model_copy(update={"attack": None})
    spec = load_spec(
        {**spec.model_dump(mode="json"), "attack": {"method": method, "max_images": images}}, plugins=plugins
    )
    builder = Builder(plugins)
    attack = build_attack(spec, builder)
    data = attack_data(spec, model, "val", builder, limit=images, batch_size=16)
    if isinstance(attack, FitsOnData):
        fit_data = attack_data(spec, model, "train", builder, limit=None, batch_size=16).batches
        attack.fit(model, [(b.images, b.targets) for b in fit_data])
    objective, target = objective_of(attack, model)
    report = run_attack_on(model, attack, data, objective=objective, target_class=target, score_threshold=0.3)
    report.pop("_examples")
    return report


def classifier_goals(checkpoint: Path, plugins: PluginManager, images: int) -> dict[str, Any]:
    loaded = resolve_target(checkpoint, builder=Builder(plugins))
    model, spec = loaded.model, loaded.spec
    pgd = _attack(spec, model, {"type": "pgd", "eps": EPS8, "steps": 10}, plugins=plugins, images=images)
    report: dict[str, Any] = {
        "model": str(checkpoint),
        "images": pgd["images"],
        "clean_balanced_accuracy": pgd["clean"].get("balanced_accuracy"),
        "pgd10_eps8_success": pgd["success_rate"],
        "pgd10_eps8_goal": ">= 0.90",
        "pgd10_met": pgd["success_rate"] >= 0.90,
        "patch_fraction_max": PATCH["area"],
    }
    # one patch per target class: `present` makes the target appear (Brown et al.'s setting),
    # `absent` hides it (the patch must land on the target); full size, upright, random places
    for target in model.class_names:
        patch = _attack(
            spec,
            model,
            {"type": "patch", **PATCH, "target_class": target},
            plugins=plugins,
            images=images,
        )
        report[f"patch_to_{target}_success"] = patch["success_rate"]
        report[f"patch_to_{target}_counted"] = patch["success_counted"]
    best = max(report[f"patch_to_{target}_success"] for target in model.class_names)
    report["patch_goal"] = ">= 0.80 (one target class)"
    report["patch_met"] = best >= 0.80
    return report


def detector_goals(checkpoint: Path, plugins: PluginManager, images: int) -> dict[str, Any]:
    loaded = resolve_target(checkpoint, builder=Builder(plugins))
    model, spec = loaded.model, loaded.spec
    report: dict[str, Any] = {"model": str(checkpoint)}
    for objective in ("vanishing", "untargeted"):  # the goal is on vanishing; untargeted for context
        run = _attack(
            spec,
            model,
            {"type": "pgd", "eps": EPS8, "steps": 10, "objective": objective},
            plugins=plugins,
            images=images,
        )
        clean, adversarial = run["clean"]["AP50"], run["adversarial"]["AP50"]
        report[objective] = {
            "images": run["images"],
            "clean_AP50": clean,
            "adversarial_AP50": adversarial,
            "relative_drop": (clean - adversarial) / clean if clean > 0 else float("nan"),
        }
    drop = report["vanishing"]["relative_drop"]
    return {**report, "goal": "vanishing drop >= 0.80", "met": drop >= 0.80}


def adversarial_training(
    config: Path, weights: Path | None, plugins: PluginManager, images: int
) -> dict[str, Any]:
    results = {}
    start = [f"model.backbone.pretrained={weights}"] if weights else []
    for name, extra in (
        ("standard", []),
        ("adversarial", ["train.adversarial={attack: {type: pgd, eps: 0.0157, steps: 3}, ratio: 0.5}"]),
    ):
        spec = load_spec(config, [*start, *extra], plugins=plugins)
        with tempfile.TemporaryDirectory() as folder:
            train(spec, out_dir=Path(folder) / "run", plugins=plugins, show_progress=False)
            loaded = resolve_target(Path(folder) / "run" / "best.pt", builder=Builder(plugins))
            model, spec = loaded.model, loaded.spec
        row = {}
        for eps in (EPS4, EPS8):
            report = _attack(
                spec, model, {"type": "pgd", "eps": eps, "steps": 10}, plugins=plugins, images=images
            )
            row["clean_accuracy"] = report["clean"]["accuracy"]
            row[f"robust_accuracy_{round(eps * 255)}"] = report["adversarial"]["accuracy"]
        results[name] = row
    gain = results["adversarial"]["robust_accuracy_4"] - results["standard"]["robust_accuracy_4"]
    cost = results["standard"]["clean_accuracy"] - results["adversarial"]["clean_accuracy"]
    return {**results, "robust_gain_4": gain, "clean_cost": cost, "met": gain >= 0.30 and cost <= 0.10}


def _finetune_model(out: Path) -> Path | None:
    results = out / "finetune" / "results.json"
    if not results.is_file():
        return None
    return Path(json.loads(results.read_text())["best_model"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "demo", help="the demos' output folder")
    parser.add_argument("--classifier", type=Path, help="the fine-tuning demo's model (best.pt)")
    parser.add_argument("--detector", type=Path, help="the detection demo's model (best.pt)")
    parser.add_argument(
        "--images", type=int, default=200, help="held-out images per goal, evenly spaced over the split"
    )
    parser.add_argument("--size", type=int, default=64, help="input side of the cost measurement")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--adversarial-training", action="store_true", help="also train and compare two classifiers"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plugins = PluginManager()
    report: dict[str, Any] = {
        "threads": args.threads,
        "pgd_step_cost": pgd_step_cost(args.size, args.batch, args.rounds, plugins),
    }
    classifier = args.classifier or _finetune_model(args.out)
    if classifier is not None and classifier.is_file():
        report["classifier"] = classifier_goals(classifier, plugins, args.images)
    else:
        report["classifier"] = {
            "skipped": "no fine-tuning demo model: run 'toolkit demo --finetune' or pass --classifier"
        }
    detector = args.detector or args.out / "detection" / "best.pt"
    if detector.is_file():
        report["detector"] = detector_goals(detector, plugins, args.images)
    else:
        report["detector"] = {"skipped": "no detection demo model: run 'toolkit demo' or pass --detector"}
    if args.adversarial_training:
        weights = args.out / "pretrain" / "best.pt"
        report["adversarial_training"] = adversarial_training(
            REPO / "configs" / "demo_finetune_classifier.yaml",
            weights if weights.is_file() else None,
            plugins,
            args.images,
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
