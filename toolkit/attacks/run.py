"""`toolkit attack`: a spec's attack on its data, clean against adversarial, reported and drawn.

For each batch of the split (the model's own preprocessing): predictions on the clean images,
the attack, predictions on the adversarial images; the task's evaluator scores both, the task
says per image whether the attack succeeded, and the perturbation's L-inf and L2 norms are kept.
An attack that learns (`fit`, e.g. the patch) first fits on the `fit_split` batches. With an ONNX
file the same adversarial images (made on the torch model) are also scored by the runtime: a
transfer attack on the deployed model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from toolkit.attacks.objectives import resolve_objective
from toolkit.build import Builder
from toolkit.contracts import AimsAtObjective
from toolkit.data.split import DataSplit
from toolkit.errors import ToolkitError, validation_problems
from toolkit.inference import eval_mode
from toolkit.model import ToolkitModel
from toolkit.spec import AttackSpec, Spec


@dataclass(frozen=True)
class AttackData:
    """The attacked split, built once, and its batches in memory (the same for every sweep value)."""

    split: DataSplit
    batches: list[Any]


@dataclass
class AttackTotals:
    """Accumulated over the batches of one attack run."""

    images: int = 0
    counted: int = 0
    succeeded: int = 0
    linf: list[float] = field(default_factory=list)
    l2: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, clean: Tensor, adversarial: Tensor, flags: Sequence[bool | None], seconds: float) -> None:
        delta = (adversarial - clean).flatten(1).float()
        self.linf += delta.abs().amax(1).tolist()
        self.l2 += delta.norm(dim=1).tolist()
        self.images += len(flags)
        self.counted += sum(flag is not None for flag in flags)
        self.succeeded += sum(flag is True for flag in flags)
        self.seconds += seconds

    def summary(self) -> dict[str, float | int]:
        return {
            "images": self.images,
            "success_rate": self.succeeded / self.counted if self.counted else float("nan"),
            "success_counted": self.counted,
            "linf_mean": _mean(self.linf),
            "linf_max": max(self.linf, default=0.0),
            "l2_mean": _mean(self.l2),
            "l2_max": max(self.l2, default=0.0),
            "attack_seconds": self.seconds,
        }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def attack_section(spec: Spec) -> AttackSpec:
    if spec.attack is None:
        raise ToolkitError(
            f"{spec.source}: no attack section; add one, e.g. "
            "attack: {method: {type: pgd, eps: 0.0314}}, or pass attack.method.type=pgd"
        )
    return spec.attack


def build_attack(spec: Spec, builder: Builder, *, params: Mapping[str, Any] | None = None) -> Any:
    """The spec's attack component, with `params` replacing some of its parameters (sweeps)."""
    method = attack_section(spec).method
    if params:
        fields = [name for name in type(method).model_fields if name != "type"]
        unknown = [name for name in params if name not in fields]
        if unknown:
            raise ToolkitError(
                f"attack {method.type!r} has no parameter {unknown[0]!r} to sweep; its parameters: "
                f"{', '.join(fields) or 'none'}"
            )
        try:
            method = type(method).model_validate({**method.model_dump(), **params})
        except ValueError as exc:
            raise ToolkitError(f"attack.method with {dict(params)}: {validation_problems(exc)}") from None
    return builder.attack(method, path="attack.method")


def attack_data(
    spec: Spec,
    model: ToolkitModel,
    split: str,
    builder: Builder,
    *,
    limit: int | None,
    batch_size: int | None,
) -> AttackData:
    """The split (model preprocessing, encoded targets) and its batches, in memory: every image, or
    with `limit` that many evenly spaced over the split (a split sorted by class still gives every
    class)."""
    if split == "val" and spec.data is not None and spec.data.val is None:
        raise ToolkitError(f"{spec.source}: data.val is missing; add a validation dataset to attack")
    dataset = builder.dataset(spec, split)
    data = builder.split(
        spec,
        model,
        split,
        train=False,
        dataset=dataset,
        batch_size=batch_size,
        num_workers=0,
        indices=spread_indices(len(dataset), limit),
    )
    kept = []
    for batch in data.loader:
        if batch.error is not None:
            raise batch.error
        if len(batch):
            kept.append(batch)
    if not kept:
        raise ToolkitError(f"data.{split} gave no images to attack")
    return AttackData(data, kept)


def spread_indices(length: int, limit: int | None) -> list[int] | None:
    """`limit` indices evenly spaced over range(length) (the first is 0); None when all are taken."""
    if limit is None or limit >= length:
        return None
    return [position * length // limit for position in range(limit)]


def run_attack_on(
    model: ToolkitModel,
    attack: Any,
    data: AttackData,
    *,
    objective: str,
    target_class: int | None,
    score_threshold: float,
    onnx: Any = None,
    keep: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Clean and adversarial metrics, success rate, norms and time of `attack` over `data`'s batches."""
    clean_eval, adversarial_eval = data.split.evaluator(), data.split.evaluator()
    onnx_eval = data.split.evaluator() if onnx is not None else None
    totals = AttackTotals()
    examples: list[tuple[Tensor, Tensor, dict[str, Any], dict[str, Any]]] = []
    for batch in data.batches:
        with eval_mode(model), torch.inference_mode():
            clean = model.predict_batch(batch.images, batch.meta)
        started = time.perf_counter()
        adversarial_images = attack(model, batch.images, batch.targets).detach()
        seconds = time.perf_counter() - started
        _check_images(adversarial_images, batch.images)
        with eval_mode(model), torch.inference_mode():
            adversarial = model.predict_batch(adversarial_images, batch.meta)
            if len(examples) < keep:
                input_meta = [{"orig_size": tuple(model.input_size)} for _ in batch.meta]
                drawn_clean = model.predict_batch(batch.images, input_meta, score_threshold=score_threshold)
                drawn_adv = model.predict_batch(
                    adversarial_images, input_meta, score_threshold=score_threshold
                )
                for i in range(min(keep - len(examples), len(batch))):
                    examples.append((batch.images[i], adversarial_images[i], drawn_clean[i], drawn_adv[i]))
        clean_eval.update(clean, batch.targets, batch.meta)
        adversarial_eval.update(adversarial, batch.targets, batch.meta)
        if onnx_eval is not None:
            outputs = onnx.run(adversarial_images.to(onnx.device))
            transferred = onnx.task.results(outputs, batch.meta, onnx.input_size, onnx.class_names, 0.0)
            onnx_eval.update(transferred, batch.targets, batch.meta)
        flags = model.task.attack_success(
            clean,
            adversarial,
            batch.targets,
            objective=objective,
            target_class=target_class,
            score_threshold=score_threshold,
        )
        totals.add(batch.images, adversarial_images, flags, seconds)
        if progress is not None:
            progress(len(batch))
    report: dict[str, Any] = {
        "clean": _numbers(clean_eval.compute(None)),
        "adversarial": _numbers(adversarial_eval.compute(None)),
        **totals.summary(),
    }
    if onnx_eval is not None:
        report["onnx_adversarial"] = _numbers(onnx_eval.compute(None))
    report["_examples"] = examples
    return report


def _check_images(adversarial: Tensor, images: Tensor) -> None:
    if adversarial.shape != images.shape:
        raise ToolkitError(
            f"the attack returned images of shape {tuple(adversarial.shape)} for {tuple(images.shape)}; "
            "an attack must return images of the input's shape"
        )
    if not torch.isfinite(adversarial).all() or adversarial.min() < 0 or adversarial.max() > 1:
        raise ToolkitError("the attack returned pixels outside [0, 1] (or not finite); clamp its output")


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def objective_of(attack: Any, model: ToolkitModel) -> tuple[str, int | None]:
    """The objective and target class the attack climbs (for the success rate)."""
    if isinstance(attack, AimsAtObjective):
        return resolve_objective(model, attack.objective, attack.target_class)
    return resolve_objective(model, None, None)
