"""`toolkit demo --finetune`: the fine-tuning comparison of the course, with seeds' spread.

Presence/absence of a patterned target (configs/demo_finetune_classifier.yaml) learned by a
ResNet-18 five ways: from scratch; pretrained with the backbone frozen (linear probe); pretrained
and unfrozen; pretrained and unfrozen with a lower backbone learning rate; the best of those
again without augmentation. Each row runs over several seeds (model initialisation, data order,
augmentation) and reports balanced accuracy and the presence class's F1 on a held-out test set
drawn from other seeds, trainable parameters and time. The best row also gets a precision-recall
curve and the threshold that maximizes F1.

The pretrained backbone comes from `--weights FILE` or from `configs/demo_pretrain_patterns.yaml`,
trained once (its time: docs/training.md, the fine-tuning demo) and kept in OUT/pretrain/best.pt.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit.build import Builder, load_model
from toolkit.engine.run_dir import demo_config, fresh_run_dir
from toolkit.engine.trainer import RunSummary, train
from toolkit.errors import ToolkitError
from toolkit.spec import load_spec
from toolkit.table import format_table

FINETUNE_CONFIG = Path("configs/demo_finetune_classifier.yaml")
PRETRAIN_CONFIG = Path("configs/demo_pretrain_patterns.yaml")
POSITIVE = "present"
NO_AUGMENTATION = "data.augment=[{type: resize}]"


@dataclass(frozen=True)
class Variant:
    """One row of the comparison: a name, its overrides and whether it starts from the weights."""

    name: str
    overrides: tuple[str, ...]
    pretrained: bool = True


VARIANTS: tuple[Variant, ...] = (
    Variant("from scratch", ("model.backbone.pretrained=none",), pretrained=False),
    Variant(
        "frozen (linear probe)",
        ("model.backbone.frozen_stages=4", "model.backbone.norm_eval=true", "train.optimizer.lr=0.03"),
    ),
    Variant("unfrozen", ()),
    Variant("unfrozen, backbone lr x0.1", ("train.backbone_lr_mult=0.1",)),
)


@dataclass
class RowResult:
    """A row's per-seed figures."""

    variant: Variant
    balanced_accuracy: list[float] = field(default_factory=list)
    f1: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    trainable: int = 0
    runs: list[Path] = field(default_factory=list)

    def mean(self, values: Sequence[float]) -> float:
        return statistics.fmean(values) if values else float("nan")

    def std(self, values: Sequence[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant.name,
            "overrides": list(self.variant.overrides),
            "balanced_accuracy": self.balanced_accuracy,
            "balanced_accuracy_mean": self.mean(self.balanced_accuracy),
            "balanced_accuracy_std": self.std(self.balanced_accuracy),
            "f1_present": self.f1,
            "f1_present_mean": self.mean(self.f1),
            "f1_present_std": self.std(self.f1),
            "trainable_parameters": self.trainable,
            "seconds": self.seconds,
            "seconds_mean": self.mean(self.seconds),
        }


def pretrained_weights(out: Path, weights: Path | None, builder: Builder) -> Path:
    """`weights` when given (it must exist), else OUT/pretrain/best.pt, pretrained now if missing."""
    if weights is not None:
        if not weights.is_file():
            raise ToolkitError(f"--weights {str(weights)!r} not found; pass a weights file or leave it out")
        return weights
    kept = out / "pretrain" / "best.pt"
    if kept.is_file():
        print(f"pretrained backbone: {kept} (delete it to pretrain again)")
        return kept
    print(f"pretraining the backbone once ({PRETRAIN_CONFIG}); later runs reuse {kept}")
    spec = load_spec(demo_config(None, PRETRAIN_CONFIG), [], plugins=builder.plugins)
    summary = train(
        spec, out_dir=fresh_run_dir(out / "pretrain"), plugins=builder.plugins, show_progress=True
    )
    headline = summary.best_metric
    value = summary.final_metrics.get(headline, float("nan"))
    print(f"pretraining: {headline} {value:.3f} in {summary.train_seconds:.0f} s")
    return kept


def render_once(config: Path, overrides: Sequence[str], builder: Builder) -> None:
    """Read every image of both splits once, so the datasets keep them for all the runs.

    The presence dataset keeps what it rendered in its process; DataLoader workers forked
    later inherit those images instead of drawing them again in every run.
    """
    spec = load_spec(config, list(overrides), plugins=builder.plugins)
    for split in ("train", "val"):
        dataset = builder.dataset(spec, split)
        for index in range(len(dataset)):
            dataset[index]


def _metrics(summary: RunSummary) -> tuple[float, float]:
    metrics = summary.final_metrics
    per_class = metrics.get("per_class", {})
    return float(metrics["balanced_accuracy"]), float(per_class.get(POSITIVE, {}).get("f1", float("nan")))


def run_variant(
    variant: Variant,
    *,
    config: Path,
    overrides: Sequence[str],
    weights: Path,
    seeds: Sequence[int],
    out: Path,
    builder: Builder,
    extra: Sequence[str] = (),
    name: str | None = None,
    report: Callable[[str], None] = print,
) -> RowResult:
    """Train `variant` once per seed; the per-seed figures on the held-out set."""
    row = RowResult(Variant(name or variant.name, (*variant.overrides, *extra), variant.pretrained))
    start = [f"model.backbone.pretrained={weights}"] if variant.pretrained else []
    folder = out / _slug(row.variant.name)
    for seed in seeds:
        spec = load_spec(
            config,
            [*overrides, *start, *row.variant.overrides, f"train.seed={seed}", "train.plots=false"],
            plugins=builder.plugins,
        )
        torch.manual_seed(seed)
        run_dir = fresh_run_dir(folder / f"seed{seed}")
        summary = train(spec, out_dir=run_dir, plugins=builder.plugins, show_progress=False)
        balanced, f1 = _metrics(summary)
        row.balanced_accuracy.append(balanced)
        row.f1.append(f1)
        row.seconds.append(summary.train_seconds)
        row.trainable = summary.trainable_parameters
        row.runs.append(run_dir)
        report(
            f"  {row.variant.name}, seed {seed}: balanced accuracy {balanced:.3f}, F1 {f1:.3f} "
            f"({summary.train_seconds:.0f} s)"
        )
    return row


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").replace("__", "_")


def precision_recall(scores: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and the threshold of every distinct score (highest first)."""
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order].astype(bool)
    distinct = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # last index of each score
    tp = np.cumsum(labels)[distinct]
    fp = (distinct + 1) - tp
    positives = max(int(labels.sum()), 1)
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / positives
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "threshold": scores[distinct]}


def presence_scores(run_dir: Path, builder: Builder) -> tuple[np.ndarray, np.ndarray]:
    """The run's best model's presence probability on every held-out image, and the true labels."""
    model = load_model(run_dir / "best.pt", plugins=builder.plugins)
    spec = load_spec(run_dir / "spec.yaml", [], plugins=builder.plugins)
    dataset = builder.dataset(spec, "val")
    positive = list(model.class_names).index(POSITIVE)
    scores, labels = [], []
    for start in range(0, len(dataset), 64):
        samples = [dataset[i] for i in range(start, min(start + 64, len(dataset)))]
        results = model.predict([image for image, _ in samples], batch_size=64)
        scores += [float(result["probs"][positive]) for result in results]
        labels += [int(label) for _, label in samples]
    return np.array(scores), np.array(labels)


def save_pr_curve(curve: dict[str, np.ndarray], best: int, title: str, path: Path) -> Path:
    """The precision-recall curve with the F1-maximizing threshold marked, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(curve["recall"], curve["precision"], drawstyle="steps-post", label="precision-recall")
    axes.scatter(
        [curve["recall"][best]],
        [curve["precision"][best]],
        color="crimson",
        zorder=3,
        label=f"best F1 {curve['f1'][best]:.3f} at threshold {curve['threshold'][best]:.3f}",
    )
    axes.set_xlabel("recall (present)")
    axes.set_ylabel("precision (present)")
    axes.set_xlim(0, 1.01)
    axes.set_ylim(0, 1.01)
    axes.grid(alpha=0.3)
    axes.set_title(title, fontsize=10)
    axes.legend(loc="lower left", fontsize=8)
    figure.savefig(path, dpi=120)
    return path


def _table(rows: Sequence[RowResult]) -> str:
    def spread(row: RowResult, values: Sequence[float]) -> str:
        return f"{row.mean(values):.3f} ± {row.std(values):.3f}"

    return format_table(
        ["variant", "balanced accuracy", "F1 (present)", "trainable params", "time/seed (s)"],
        [
            [
                r.variant.name,
                spread(r, r.balanced_accuracy),
                spread(r, r.f1),
                f"{r.trainable:,}",
                f"{r.mean(r.seconds):.0f}",
            ]
            for r in rows
        ],
    )


def run_finetune_demo(
    out: Path,
    builder: Builder,
    *,
    weights: Path | None = None,
    config: Path | None = None,
    overrides: Sequence[str] = (),
    seeds: int = 3,
) -> dict[str, Any]:
    """Run the comparison into OUT/finetune; print the table; return (and write) results.json."""
    if seeds < 1:
        raise ToolkitError(f"--seeds must be at least 1, got {seeds}")
    started = time.perf_counter()
    weights = pretrained_weights(out, weights, builder)
    config = demo_config(config, FINETUNE_CONFIG)
    folder = out / "finetune"
    folder.mkdir(parents=True, exist_ok=True)
    common = {
        "config": config,
        "overrides": list(overrides),
        "weights": weights,
        "out": folder,
        "builder": builder,
    }
    render_once(config, overrides, builder)
    seed_list = list(range(seeds))
    rows = []
    for variant in VARIANTS:
        rows.append(run_variant(variant, seeds=seed_list, **common))
    best = max(rows, key=lambda r: r.mean(r.balanced_accuracy))
    rows.append(
        run_variant(
            best.variant,
            seeds=seed_list,
            extra=(NO_AUGMENTATION,),
            name=f"{best.variant.name}, no augmentation",
            **common,
        )
    )
    scores, labels = presence_scores(best.runs[0], builder)
    curve = precision_recall(scores, labels)
    index = int(np.argmax(curve["f1"]))
    pr_path = save_pr_curve(
        curve, index, f"{best.variant.name} (seed 0), held-out set", folder / "pr_curve.png"
    )
    _drop_checkpoints(rows, keep=best.runs[0])
    seconds = time.perf_counter() - started
    results = {
        "rows": [row.as_dict() for row in rows],
        "best": best.variant.name,
        "best_model": str(best.runs[0] / "best.pt"),
        "best_threshold": float(curve["threshold"][index]),
        "best_threshold_f1": float(curve["f1"][index]),
        "pr_curve": str(pr_path),
        "seeds": seed_list,
        "weights": str(weights),
        "seconds": seconds,
    }
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(_table(rows))
    print(
        f"\nbest: {best.variant.name}; F1 of 'present' peaks at {curve['f1'][index]:.3f} with threshold "
        f"{curve['threshold'][index]:.3f} (PR curve: {pr_path})"
    )
    print(
        f"model: {results['best_model']}; results: {folder / 'results.json'}; comparison took {seconds:.0f} s"
    )
    return results


def _drop_checkpoints(rows: Sequence[RowResult], *, keep: Path) -> None:
    """Every checkpoint but `keep`'s best.pt (the best row's first seed) goes: two per run otherwise."""
    for row in rows:
        for run in row.runs:
            for checkpoint in run.glob("*.pt"):
                if not (run == keep and checkpoint.name == "best.pt"):
                    checkpoint.unlink()
