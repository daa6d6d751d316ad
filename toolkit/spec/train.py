"""The `train:` section: epochs, optimizer, schedule, precision, device, fine-tuning, checkpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from toolkit.spec.base import ComponentSpec, StrictModel

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class SGD(StrictModel):
    """SGD with momentum."""

    type: Literal["sgd"]
    lr: PositiveFloat = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 1e-4


class Adam(StrictModel):
    """Adam."""

    type: Literal["adam"]
    lr: PositiveFloat = 1e-3
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    weight_decay: NonNegativeFloat = 0.0


class AdamW(StrictModel):
    """AdamW (decoupled weight decay)."""

    type: Literal["adamw"]
    lr: PositiveFloat = 1e-3
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    weight_decay: NonNegativeFloat = 0.01


Optimizer = Annotated[SGD | Adam | AdamW, Field(discriminator="type")]


class Constant(StrictModel):
    """Constant learning rate after the warmup."""

    type: Literal["constant"]


class Cosine(StrictModel):
    """Cosine decay from lr to lr * min_lr_ratio over the run, after the warmup."""

    type: Literal["cosine"]
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0


class Step(StrictModel):
    """Multiply the learning rate by gamma at each milestone epoch."""

    type: Literal["step"]
    milestones: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [8, 11])
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1


class OneCycle(StrictModel):
    """One-cycle: ramp up to lr over pct_start of the run, then anneal (cosine) to lr / final_div_factor."""

    type: Literal["one_cycle"]
    pct_start: Annotated[float, Field(gt=0, lt=1)] = 0.3
    div_factor: Annotated[float, Field(ge=1)] = 25.0
    final_div_factor: Annotated[float, Field(ge=1)] = 1e4


Schedule = Annotated[Constant | Cosine | Step | OneCycle, Field(discriminator="type")]


class AdversarialSpec(StrictModel):
    """`train.adversarial`: adversarial examples mixed into training batches (adversarial training)."""

    attack: ComponentSpec = Field(description="the attack that makes them, e.g. {type: pgd, eps: 0.0314}")
    ratio: float = Field(
        default=0.5, gt=0.0, le=1.0, description="share of each batch replaced by its adversarial examples"
    )


class EmaSpec(StrictModel):
    """`train.ema`: an exponential moving average of the weights, evaluated and saved as the model."""

    decay: float = Field(default=0.9998, gt=0.0, lt=1.0, description="the average's decay per optimizer step")
    ramp_steps: float = Field(
        default=2000.0,
        ge=0.0,
        description="warm-up: after n updates the decay is decay * (1 - exp(-n / ramp_steps)); 0: none",
    )


def _default_loggers() -> list[ComponentSpec]:
    return [ComponentSpec(type="jsonl"), ComponentSpec(type="csv")]


class TrainSpec(StrictModel):
    """The `train:` section."""

    epochs: int = Field(default=10, ge=1, le=100_000)
    time_limit: float | None = Field(
        default=None,
        gt=0,
        le=30 * 24 * 3600,
        description="train for this many seconds instead of `epochs` (training steps only); the schedule "
        "is fitted to the budget from the measured speed, and the run ends with a valid best.pt",
    )
    loss: ComponentSpec | None = Field(default=None, description="loss; default: the head's own loss")
    optimizer: Optimizer = Field(default_factory=lambda: AdamW(type="adamw"))
    schedule: Schedule = Field(default_factory=lambda: Cosine(type="cosine"))
    warmup_steps: int = Field(default=0, ge=0, description="linear warmup from 0 over this many steps")
    clip_grad_norm: PositiveFloat | None = Field(default=None, description="clip the gradient norm")
    amp: Literal["none", "bf16", "fp16"] = Field(
        default="none", description="mixed precision on CUDA (fp16 uses a grad scaler); ignored on CPU"
    )
    device: str = Field(
        default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto | cpu | cuda:N"
    )
    seed: int = Field(default=0, ge=0)
    threads: int | None = Field(
        default=None, ge=1, le=512, description="torch CPU threads (default: torch's)"
    )
    channels_last: bool = Field(default=False, description="channels-last memory format (faster convs)")
    sync_bn: bool = Field(
        default=False,
        description="under torchrun: BatchNorm statistics over the global batch of all processes",
    )
    eval_interval: int = Field(default=1, ge=0, description="evaluate every N epochs (0: only at the end)")
    best_metric: str | None = Field(
        default=None, description="metric that selects best.pt (default AP / accuracy)"
    )
    unfreeze_at_epoch: int | None = Field(
        default=None, ge=1, description="unfreeze the whole backbone at this epoch (progressive unfreezing)"
    )
    backbone_lr_mult: PositiveFloat = Field(
        default=1.0, description="learning-rate multiplier of the backbone"
    )
    log_interval: int = Field(default=20, ge=1, description="steps between progress lines and log records")
    adversarial: AdversarialSpec | None = Field(
        default=None, description="adversarial training: an attack and the share of each batch it replaces"
    )
    ema: EmaSpec | None = Field(
        default=None, description="a moving average of the weights, evaluated and saved as the model"
    )
    accumulate: int = Field(
        default=1, ge=1, le=1024, description="gradient accumulation: one optimizer step every N batches"
    )
    save_safetensors: bool = Field(
        default=False,
        description="also write best.safetensors (weights, spec in its metadata); needs toolkit[safetensors]",
    )
    plots: bool = Field(
        default=True,
        description="write the evaluation plots, the prediction grid and curves.png (false: figures only)",
    )
    loggers: list[ComponentSpec] = Field(
        default_factory=_default_loggers,
        description="run loggers (jsonl: metrics.jsonl, csv: results.csv, tensorboard, plugins)",
    )

    @model_validator(mode="after")
    def _check_schedule(self) -> TrainSpec:
        if self.time_limit is not None:
            if isinstance(self.schedule, Step):
                raise ValueError(
                    "schedule step counts epochs, and train.time_limit trains for a time instead: use "
                    "cosine, one_cycle or constant"
                )
            return self
        if isinstance(self.schedule, Step) and any(m > self.epochs for m in self.schedule.milestones):
            raise ValueError(
                f"schedule.milestones {self.schedule.milestones} lie beyond train.epochs={self.epochs}; "
                "lower them or raise epochs"
            )
        if self.unfreeze_at_epoch is not None and self.unfreeze_at_epoch >= self.epochs:
            raise ValueError(
                f"unfreeze_at_epoch ({self.unfreeze_at_epoch}) must be below epochs ({self.epochs})"
            )
        return self
