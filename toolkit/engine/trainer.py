"""The training loop: spec -> model, loss, loaders, optimizer -> epochs -> checkpoints, metrics, curves."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from toolkit.build import Builder, data_section
from toolkit.checkpoints import load_training_checkpoint, require_safetensors
from toolkit.contracts import CountsBoxQuirks, Freezable
from toolkit.data.categories import dataset_category_ids
from toolkit.engine import distributed
from toolkit.engine.ema import WeightsAverage
from toolkit.engine.evaluate import evaluate
from toolkit.engine.loggers import RunLoggers
from toolkit.engine.logs import Progress, plot_curves
from toolkit.engine.optim import build_optimizer, build_scheduler
from toolkit.engine.run_dir import claim_run_dir, is_main_process, user_entries
from toolkit.engine.saving import (
    FORMAT_VERSION,
    remove_stale_temp_files,
    rng_state,
    save_atomic,
    save_safetensors,
    set_rng_state,
    write_atomic,
)
from toolkit.engine.sync_bn import convert_sync_batchnorm
from toolkit.engine.time_budget import TimeBudget
from toolkit.errors import ComponentError, ToolkitError, describe_exception, first_line
from toolkit.guard import component_in_traceback
from toolkit.plugins import PluginManager
from toolkit.spec import Spec, TrainSpec

#: files a run writes atomically (their temp files are cleaned when a run claims the folder)
#: the schedule's length before a time budget's first fit: its first steps see the schedule's start
UNFITTED_STEPS = 10**9
RUN_FILES = ("last.pt", "best.pt", "best.safetensors", "spec.yaml", "results.csv")


class NonFiniteLossError(ToolkitError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunSummary:
    """What a training run produced."""

    out_dir: str
    epochs: int
    steps: int
    best_metric: str
    best_value: float | None
    metric_names: tuple[str, ...] = ()
    final_metrics: dict[str, Any] = field(default_factory=dict)  # the last evaluation's (last.pt)
    best_metrics: dict[str, Any] = field(default_factory=dict)  # best.pt's evaluation
    best_epoch: int | None = None
    train_seconds: float = 0.0
    images_per_second: float = 0.0
    skipped_samples: int = 0
    trainable_parameters: int = 0
    frozen_parameters: int = 0
    files: dict[str, str] = field(default_factory=dict)
    time_budget: str | None = None  # with train.time_limit: how far the run got
    box_quirks: tuple[int, int] | None = None  # training boxes the dataset dropped, clipped


def train(
    spec: Spec,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    exist_ok: bool = False,
    plugins: PluginManager | None = None,
    show_progress: bool = True,
) -> RunSummary:
    """Train the spec's model on its data (components from `plugins`, default the process-wide
    plugin manager); returns the run's summary (see Trainer)."""
    return Trainer(
        spec,
        Builder(plugins),
        out_dir=out_dir,
        resume=resume,
        exist_ok=exist_ok,
        show_progress=show_progress,
    ).fit()


def default_out_dir(spec: Spec) -> Path:
    stem = Path(spec.source).stem if spec.source != "<dict>" else "run"
    return Path("runs") / stem


class Trainer:
    """Fine-tunes a backbone + head from a spec, on one device or under torchrun (DDP).

    The run folder is claimed (checked and locked, `toolkit.engine.run_dir`) before anything is
    built; `resume` continues from its last.pt, `exist_ok` allows a non-empty folder that is not a
    run. Saves write best.pt before last.pt, so last.pt never records a best value that best.pt
    does not hold yet.
    """

    def __init__(
        self,
        spec: Spec,
        builder: Builder,
        *,
        out_dir: str | Path | None = None,
        resume: bool = False,
        exist_ok: bool = False,
        show_progress: bool = True,
    ) -> None:
        self.spec = spec
        self.config: TrainSpec = spec.train or TrainSpec()
        self.data = data_section(spec)
        self.builder = builder
        self.out_dir = Path(out_dir) if out_dir is not None else default_out_dir(spec)
        self.resume = resume
        self.exist_ok = exist_ok
        self.show_progress = show_progress
        self._wrote = False  # whether this run wrote into its folder yet
        self._user_entries: frozenset[str] = frozenset()  # what the folder held that no run wrote

    # -- setup ----------------------------------------------------------------------------------
    def _setup(self) -> None:
        config = self.config
        self.context = distributed.init_distributed(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        device, builder = self.context.device, self.builder
        self.model = builder.model(self.spec).to(device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.task = self.model.task
        self.best_metric = config.best_metric or self.task.best_metric
        if self.best_metric not in self.task.metric_names:
            raise ToolkitError(
                f"train.best_metric {self.best_metric!r} is not a {self.task.name} metric; "
                f"choose one of {', '.join(self.task.metric_names)}"
            )
        if config.unfreeze_at_epoch is not None and not isinstance(self.model.backbone, Freezable):
            raise ToolkitError(
                f"train.unfreeze_at_epoch needs a backbone with set_frozen_stages(); "
                f"{self.spec.model.backbone.type} has none"
            )
        self.loss_fn = builder.loss(self.spec, self.model).to(device)
        self.adversarial = None
        if config.adversarial is not None:
            self.adversarial = builder.attack(config.adversarial.attack, path="train.adversarial.attack")
        self.train_data = builder.split(
            self.spec,
            self.model,
            "train",
            rank=self.context.rank,
            world_size=self.context.world_size,
            device=device,
        )
        self.train_loader = self.train_data.loader
        if len(self.train_loader) == 0:
            raise ToolkitError("data.train is empty: nothing to train on")
        #: the dataset's original category id per label (COCO's ids), saved with the weights so that
        #: predict and export write results other tools score as they are
        self.category_ids = dataset_category_ids(self.train_data.dataset)
        quirks = self.train_data.dataset
        self.box_quirks = (
            (quirks.dropped_boxes, quirks.clipped_boxes) if isinstance(quirks, CountsBoxQuirks) else None
        )
        self.val_data = None
        if self.data.val is not None and self.context.is_main:
            self.val_data = builder.split(self.spec, self.model, "val", device=device)
        self.optimizer = build_optimizer(self.model, config)
        steps_per_epoch = math.ceil(len(self.train_loader) / config.accumulate)
        self.steps_per_epoch = steps_per_epoch
        self.budget = TimeBudget(config.time_limit) if config.time_limit is not None else None
        self.time_up = False  # the budget is spent (agreed by every process)
        schedule_length = (lambda: self.budget.steps_for_schedule(UNFITTED_STEPS)) if self.budget else None
        self.scheduler = build_scheduler(self.optimizer, config, steps_per_epoch, schedule_length)
        self.ema = WeightsAverage(self.model, config.ema) if config.ema is not None else None
        if config.save_safetensors:
            require_safetensors()
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
        self.amp = self.amp_dtype is not None and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and config.amp == "fp16")
        self.network: nn.Module = self.model
        if self.context.distributed and config.sync_bn:
            convert_sync_batchnorm(self.model)
        if self.context.distributed:
            self.network = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.epoch = 0
        self.step = 0
        self.best_value: float | None = None
        self.final_metrics: dict[str, Any] = {}
        self.best_metrics: dict[str, Any] = {}  # the evaluation best.pt was saved after
        self.best_epoch: int | None = None
        self.epoch_metrics: dict[str, Any] | None = None  # this epoch's validation, when it had one
        self.history: list[dict[str, Any]] = []  # train and val records (the curves), kept in last.pt
        resuming = self.resume and (self.out_dir / "last.pt").exists()
        if resuming:
            self._load_last()
        elif self.resume and self.context.is_main:
            warnings.warn(
                f"--resume: {self.out_dir} holds no last.pt (the run stopped before its first checkpoint); "
                "starting from the first epoch",
                stacklevel=2,
            )
        self.loggers = RunLoggers()
        if self.context.is_main:  # built before training: a bad logger is a spec error
            self.loggers = RunLoggers.build(
                config.loggers,
                builder=self.builder,
                run_dir=self.out_dir,
                resume_step=self.step if resuming else None,
                user_entries=self._user_entries,
            )

    # -- checkpoints ----------------------------------------------------------------------------
    @property
    def evaluated_model(self) -> nn.Module:
        """The model that is evaluated and saved: the weights' moving average with train.ema."""
        return self.ema.module if self.ema is not None else self.model

    def _weights_state(self) -> dict[str, Any]:
        """best.pt: the evaluated weights, the spec and the metrics (what predict/eval/export read)."""
        return {
            "format": FORMAT_VERSION,
            "model": self.evaluated_model.state_dict(),
            "spec": self.spec.model_dump(mode="json"),
            "epoch": self.epoch,
            "step": self.step,
            "best_metric": self.best_metric,
            "best_value": self.best_value,
            "metrics": self.final_metrics,
            "category_ids": self.category_ids,
        }

    def _state(self, weights: dict[str, Any] | None = None) -> dict[str, Any]:
        """last.pt: `weights` (default `_weights_state()`) plus what `--resume` needs (optimizer,
        scheduler, random states; with train.ema the trained weights under `train_model` and the
        average's update count)."""
        state = {
            **(weights if weights is not None else self._weights_state()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
        }
        state["history"] = self.history
        if self.budget is not None:
            state["time_budget"] = self.budget.state()
        state["best_metrics"], state["best_epoch"] = self.best_metrics, self.best_epoch
        if self.ema is not None:
            state["train_model"] = self.model.state_dict()
            state["ema_updates"] = self.ema.updates
        return state

    def _load_last(self) -> None:
        path = self.out_dir / "last.pt"
        checkpoint = load_training_checkpoint(path, map_location=self.context.device)
        saved_model = checkpoint["spec"]["model"]
        if saved_model != self.spec.model_dump(mode="json")["model"]:
            raise ToolkitError(f"--resume: the model section differs from the one {path} was trained with")
        if self.ema is not None and not isinstance(checkpoint.get("ema_updates"), int):
            raise ToolkitError(
                f"--resume: {path} was saved without train.ema; resume with the spec the run was started "
                "with (spec.yaml in the run folder) or start a new run"
            )
        trained = "train_model" if "train_model" in checkpoint else "model"
        parts = (
            (trained, self.model),
            ("optimizer", self.optimizer),
            ("scheduler", self.scheduler),
            ("scaler", self.scaler),
        )
        for key, target in parts:
            try:
                target.load_state_dict(checkpoint[key])
            except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
                first = first_line(exc) or type(exc).__name__
                raise ToolkitError(
                    f"--resume: the {key} state in {path} does not fit this run ({first}); "
                    "resume with the spec the run was started with (spec.yaml in the run folder)"
                ) from None
        if self.ema is not None:
            try:
                self.ema.load(checkpoint["model"], checkpoint["ema_updates"])
            except (RuntimeError, ValueError, KeyError, TypeError) as exc:
                raise ToolkitError(f"--resume: the weights' average in {path} does not fit ({exc})") from None
        self.epoch = int(checkpoint["epoch"])
        self.step = int(checkpoint["step"])
        metrics = checkpoint.get("metrics")
        self.final_metrics = dict(metrics) if isinstance(metrics, dict) else {}
        history = checkpoint.get("history")
        self.history = list(history) if isinstance(history, list) else []
        self.best_value = checkpoint.get("best_value")
        if self.budget is not None:
            self.budget = TimeBudget.restore(self.budget.limit, checkpoint.get("time_budget"))
            self.time_up = self.budget.exhausted()
        best_metrics, best_epoch = checkpoint.get("best_metrics"), checkpoint.get("best_epoch")
        self.best_metrics = dict(best_metrics) if isinstance(best_metrics, dict) else {}
        self.best_epoch = best_epoch if isinstance(best_epoch, int) else None
        try:
            set_rng_state(checkpoint["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ToolkitError(f"--resume: the random state in {path} is damaged ({exc})") from None
        unfreeze = self.config.unfreeze_at_epoch
        if unfreeze is not None and self.epoch >= unfreeze:
            self.model.backbone.set_frozen_stages(0)

    def _save(self, improved: bool) -> None:
        """best.pt first (durable when save_atomic returns), then last.pt: a kill at any point leaves
        last.pt recording only a best value whose weights best.pt already holds."""
        if not self.context.is_main:
            return
        self.loggers.flush()
        weights = self._weights_state()
        if improved:
            save_atomic(weights, self.out_dir / "best.pt")
            if self.config.save_safetensors:
                save_safetensors(weights, self.out_dir / "best.safetensors")
        save_atomic(self._state(weights), self.out_dir / "last.pt")

    # -- loop -----------------------------------------------------------------------------------
    def fit(self) -> RunSummary:
        lock = None
        if is_main_process():
            self._user_entries = user_entries(self.out_dir)  # before the claim marks it a run
            lock = claim_run_dir(self.out_dir, resume=self.resume, exist_ok=self.exist_ok)
            for name in RUN_FILES:  # left by a run killed while saving
                remove_stale_temp_files(self.out_dir / name)
        try:
            try:
                self._setup()
                return self._fit()
            finally:
                if hasattr(self, "context"):  # set first thing in _setup
                    distributed.shutdown(self.context)
        except BaseException:
            if lock is not None and not self._wrote:
                lock.abandon()  # nothing of this run was written: leave the folder as it was
            raise
        finally:
            if lock is not None:
                lock.release()

    def _fit(self) -> RunSummary:
        config = self.config
        if self.context.is_main:
            self._wrote = True
            write_atomic(
                self.out_dir / "spec.yaml",
                yaml.safe_dump(self.spec.model_dump(mode="json"), sort_keys=False).encode(),
            )
        train_seconds, images_seen, skipped = 0.0, 0, 0
        while not self.time_up if self.budget is not None else self.epoch < config.epochs:
            if config.unfreeze_at_epoch is not None and self.epoch == config.unfreeze_at_epoch:
                self.model.backbone.set_frozen_stages(0)
            started = time.perf_counter()
            seen, epoch_skipped = self._train_epoch()
            train_seconds += time.perf_counter() - started
            images_seen += seen
            skipped += epoch_skipped
            self.epoch += 1
            improved = self._maybe_evaluate()
            self._record(self._epoch_record(time.perf_counter() - started))
            self._save(improved)
            distributed.barrier(self.context)
        files = self._finish()
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        summary = RunSummary(
            out_dir=str(self.out_dir),
            epochs=self.epoch,
            steps=self.step,
            best_metric=self.best_metric,
            best_value=self.best_value,
            metric_names=tuple(self.task.metric_names),
            final_metrics=self.final_metrics,
            best_metrics=self.best_metrics,
            best_epoch=self.best_epoch,
            train_seconds=round(train_seconds, 2),
            images_per_second=round(images_seen * self.context.world_size / max(train_seconds, 1e-9), 2),
            skipped_samples=skipped,
            box_quirks=self.box_quirks,
            time_budget=self.budget.describe(self.step, self.step / max(1, self.steps_per_epoch))
            if self.budget is not None
            else None,
            trainable_parameters=trainable,
            frozen_parameters=total - trainable,
            files=files,
        )
        self.loggers.finish(dataclasses.asdict(summary))
        return summary

    def _record(self, record: dict[str, Any]) -> None:
        """Hand a record to the loggers (train and val records are also kept for the curves)."""
        if not self.context.is_main:
            return
        if record["kind"] in ("train", "val"):
            self.history.append(record)
        self.loggers.log(record)

    def _epoch_record(self, seconds: float) -> dict[str, Any]:
        record = {
            "kind": "epoch",
            "epoch": self.epoch,
            "step": self.step,
            "lr": self.optimizer.param_groups[-1]["lr"],
            "train_loss": self.epoch_loss,
            "seconds": round(seconds, 3),
        }
        if self.epoch_metrics is not None:
            record["metrics"] = self.epoch_metrics
        return record

    def _train_epoch(self) -> tuple[int, int]:
        """One pass over the training data. With train.accumulate N, the gradients of N batches
        (each loss divided by its group's size) make one optimizer step; the epoch's last group
        may be shorter, so no gradient is carried over an epoch boundary (or a checkpoint)."""
        config, device = self.config, self.context.device
        self.train_loader.sampler.set_epoch(self.epoch)
        self.network.train()
        batches = len(self.train_loader)
        progress = Progress(
            batches,
            f"epoch {self.epoch + 1}/{config.epochs}"
            if self.budget is None
            else f"epoch {self.epoch + 1} ({self.budget.remaining:.0f} s left)",
            enabled=self.show_progress and self.context.is_main,
        )
        window: dict[str, torch.Tensor] = {}
        epoch_sums: dict[str, torch.Tensor] = {}
        window_batches = epoch_batches = window_images = 0
        window_start = time.perf_counter()
        seen = skipped = 0
        pending = False  # gradients accumulated since the last optimizer step
        self.optimizer.zero_grad(set_to_none=True)
        if self.budget is not None:
            self.budget.start()
        for position, batch in enumerate(self.train_loader, start=1):
            skipped += len(batch.skipped)
            every = config.accumulate
            group_end = position % every == 0 or position == batches
            if len(batch):
                group = min(every, batches - (position - 1) // every * every)  # batches in this step
                batch = batch.to(device, non_blocking=True)
                terms = self._train_step(batch, scale=1.0 / group, sync=group_end)
                for key, value in terms.items():
                    value = value.detach().float()
                    window[key] = window.get(key, 0.0) + value
                    epoch_sums[key] = epoch_sums.get(key, 0.0) + value
                window_batches += 1
                epoch_batches += 1
                window_images += len(batch)
                seen += len(batch)
                pending = True
            values = None
            if group_end and pending:
                self._optimizer_step()
                pending = False
                if window_batches and (self.step % config.log_interval == 0 or position == batches):
                    values = self._log_train(window, window_batches, window_images, window_start)
                    window, window_batches, window_images, window_start = {}, 0, 0, time.perf_counter()
            progress.update(1, values)
            if self.budget is not None and not pending:
                self.budget.fit(self.step)
                if self._out_of_time():
                    break
        progress.close()
        if self.budget is not None:
            self.optimizer.zero_grad(set_to_none=True)  # a group cut short by the budget is dropped
            self.budget.fit(self.step, force=True)
            self.budget.stop()
            self.time_up = self.time_up or self._out_of_time()
        self.epoch_loss = {key: float(value) / max(epoch_batches, 1) for key, value in epoch_sums.items()}
        if skipped and self.context.is_main:
            warnings.warn(
                f"epoch {self.epoch + 1}: skipped {skipped} bad samples (data.on_bad_sample: skip)",
                stacklevel=2,
            )
        return seen, skipped

    def _out_of_time(self) -> bool:
        """Whether the time budget is spent: any process's view counts, so all stop together."""
        if self.budget is None:
            return False
        spent = torch.tensor([1.0 if self.budget.exhausted() else 0.0], device=self.context.device)
        self.time_up = bool(distributed.all_reduce_mean(spent, self.context).item() > 0)
        return self.time_up

    def _log_train(
        self, sums: dict[str, torch.Tensor], batches: int, images: int, started: float
    ) -> dict[str, float]:
        """Write a train record of the window's mean loss terms (over all processes); returns the
        values the progress bar shows."""
        means = torch.stack([sums[k] / batches for k in sorted(sums)])
        means = distributed.all_reduce_mean(means, self.context)
        values = dict(zip(sorted(sums), means.tolist(), strict=True))
        rate = images * self.context.world_size / max(time.perf_counter() - started, 1e-9)
        self._record(
            {
                "kind": "train",
                "epoch": self.epoch + 1,
                "step": self.step,
                "lr": self.optimizer.param_groups[-1]["lr"],
                "loss": values,
                "images_per_s": round(rate, 2),
            }
        )
        return {**values, "img/s": rate}

    def _train_step(self, batch: Any, *, scale: float = 1.0, sync: bool = True) -> dict[str, torch.Tensor]:
        """Forward and backward of one batch, its loss multiplied by `scale`; under DDP the
        gradients are all-reduced only when `sync` (the last batch before an optimizer step)."""
        images = batch.images
        if self.adversarial is not None:
            images = self._with_adversarial(images, batch.targets)
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        no_sync = getattr(self.network, "no_sync", None)
        with contextlib.nullcontext() if sync or no_sync is None else no_sync():
            try:
                with torch.autocast(self.context.device.type, dtype=self.amp_dtype, enabled=self.amp):
                    outputs = self.network(images)
                outputs = {k: v.float() for k, v in outputs.items()}
                terms = self.loss_fn(outputs, batch.targets)
                loss = terms["loss"]
            except ToolkitError:
                raise
            except Exception as exc:
                raise self._step_failure(exc) from exc
            if not bool(torch.isfinite(loss)):
                detail = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
                raise NonFiniteLossError(
                    f"the loss is not finite at step {self.step + 1} (epoch {self.epoch + 1}): {detail}. "
                    f"Training stopped; the last good checkpoint stays in {self.out_dir}. Lower "
                    "train.optimizer.lr, add train.warmup_steps or train.clip_grad_norm, or check the data"
                )
            self.scaler.scale(loss * scale).backward()
        return terms

    def _optimizer_step(self) -> None:
        """Clip, step the optimizer and the schedule, update the weights' average, zero the gradients."""
        if self.config.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            trainable = [p for p in self.model.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(trainable, self.config.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1

    def _with_adversarial(self, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch with its first round(ratio * N) images replaced by the attack's examples (made
        with the model in eval mode, its BatchNorm statistics untouched; the rest stay clean)."""
        assert self.config.adversarial is not None
        count = round(self.config.adversarial.ratio * len(images))
        if count == 0:
            return images
        try:
            made = self.adversarial(self.model, images[:count], {k: v[:count] for k, v in targets.items()})
        except ToolkitError:
            raise
        except Exception as exc:
            raise self._step_failure(exc) from exc
        return torch.cat([made.detach().to(images.dtype), images[count:]])

    def _step_failure(self, exc: Exception) -> ToolkitError:
        """The one-line error for an exception in the forward pass or the loss (a plugin's code)."""
        where = f"at step {self.step + 1} (epoch {self.epoch + 1})"
        if isinstance(exc, torch.OutOfMemoryError):
            return ToolkitError(
                f"out of memory {where}: lower data.batch_size or model.input_size, or set train.amp"
            )
        culprit = component_in_traceback(exc) or (
            f"the model ({self.spec.model.backbone.type} + {self.spec.model.head.type}) or its loss"
        )
        return ComponentError(
            f"{culprit} failed {where}: {describe_exception(exc)} (TOOLKIT_DEBUG=1 shows the traceback)"
        )

    def _maybe_evaluate(self) -> bool:
        """Evaluate when due; True when the chosen metric improved (or when there is no validation)."""
        self.epoch_metrics = None
        interval = self.config.eval_interval
        last = self.time_up if self.budget is not None else self.epoch == self.config.epochs
        due = last or (interval > 0 and self.epoch % interval == 0)
        if self.val_data is None or not due:
            return self.val_data is None and self.context.is_main
        started = time.time()
        metrics = evaluate(
            self.evaluated_model, self.val_data, self.context.device,
            out_dir=self.out_dir if self.config.plots else None,
            channels_last=self.config.channels_last, show_progress=self.show_progress,
        )  # fmt: skip
        self.final_metrics = self.epoch_metrics = metrics
        self._record({"kind": "val", "epoch": self.epoch, "step": self.step, "metrics": metrics})
        for plot in self._plots(since=started):
            self.loggers.log_image(plot.stem, plot, step=self.step)
        value = float(metrics[self.best_metric])
        if math.isnan(value):
            return False
        lower = self.best_metric in self.task.lower_is_better
        if self.best_value is None or (value < self.best_value if lower else value > self.best_value):
            self.best_value = value
            self.best_metrics, self.best_epoch = dict(metrics), self.epoch
            return True
        return False

    def _plots(self, since: float = 0.0) -> list[Path]:
        """The PNGs in the run folder written at or after `since` (time.time())."""
        return [plot for plot in sorted(self.out_dir.glob("*.png")) if plot.stat().st_mtime >= since - 1.0]

    def _finish(self) -> dict[str, str]:
        if not self.context.is_main:
            return {}
        files = {"last": str(self.out_dir / "last.pt")}
        written = {"best": "best.pt", "safetensors": "best.safetensors", "metrics": "metrics.jsonl"}
        for key, name in {**written, "results": "results.csv"}.items():
            if (self.out_dir / name).exists():
                files[key] = str(self.out_dir / name)
        curves = plot_curves(self.history, self.out_dir / "curves.png") if self.config.plots else None
        if curves is not None:
            files["curves"] = str(curves)
            self.loggers.log_image("curves", curves, step=self.step)
        for plot in self._plots():  # what the task's evaluator drew
            files.setdefault(plot.stem, str(plot))
        return files
