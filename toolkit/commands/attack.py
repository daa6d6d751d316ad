"""`toolkit attack`: load, fit, attack, sweep, draw and report (JSON + table). The attack itself
runs in `toolkit.attacks.run`; torch is imported after the user's mistakes are reported."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import strict_json
from toolkit.attacks.sweep import parse_sweep
from toolkit.build import Builder
from toolkit.checkpoints import is_checkpoint, resolve_target
from toolkit.contracts import FitsOnData, HasAttackObjectives, HasPatch, JudgesAttacks, missing_members
from toolkit.errors import ToolkitError
from toolkit.outputs import check_no_overwrite, check_output_dir, record_written
from toolkit.spec import Spec
from toolkit.table import format_table

if TYPE_CHECKING:
    from toolkit.model import ToolkitModel

#: what `toolkit attack` writes into its --out folder
ATTACK_FILES = ("attack.json", "examples.png", "sweep.png", "patch.png")


def _progress(total: int, description: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, desc=description, unit="img", disable=not enabled, leave=False, dynamic_ncols=True
    )


def fit_if_needed(
    attack: Any, model: ToolkitModel, spec: Spec, builder: Builder, *, show_progress: bool
) -> None:
    """Fit an attack that learns (the patch) on `attack.fit_split`'s batches, with a progress bar."""
    from toolkit.attacks.run import attack_data, attack_section

    if not isinstance(attack, FitsOnData):
        return
    section = attack_section(spec)
    data = attack_data(
        spec, model, section.fit_split, builder, limit=None, batch_size=section.batch_size
    ).batches
    steps = int(attack.steps) or len(data)
    with _progress(steps, f"fitting {type(attack).__name__}", show_progress) as bar:

        def progress(step: int, value: float) -> None:
            bar.update(1)
            bar.set_postfix(objective=f"{value:.3f}")

        attack.fit(model, [(b.images, b.targets) for b in data], progress=progress)


def examples_image(model: ToolkitModel, examples: Sequence[Any], path: Path) -> Path:
    """Rows of original | perturbation (amplified to the full range) | adversarial, predictions drawn."""
    import torch
    from torchvision.utils import make_grid

    from toolkit.data.preview import to_uint8, write_preview

    tiles = []
    names = list(model.class_names)
    for clean, adversarial, clean_result, adversarial_result in examples:
        delta = adversarial.float() - clean.float()
        scale = delta.abs().max().clamp(min=1e-8)
        amplified = (0.5 + 0.5 * delta / scale).clamp(0, 1)
        tiles += [
            model.task.draw(to_uint8(clean), clean_result, names),
            to_uint8(amplified),
            model.task.draw(to_uint8(adversarial), adversarial_result, names),
        ]
    return write_preview(make_grid(torch.stack(tiles), nrow=3, padding=4, pad_value=255), path)


def sweep_plot(
    name: str, values: Sequence[float], rows: Sequence[dict[str, Any]], metric: str, path: Path
) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    labels = [f"{v * 255:.3g}/255" if name == "eps" else f"{v:.3g}" for v in values]
    axes.plot(
        range(len(values)),
        [r["adversarial"].get(metric, math.nan) for r in rows],
        "o-",
        label=f"adversarial {metric}",
    )
    axes.plot(
        range(len(values)),
        [r["clean"].get(metric, math.nan) for r in rows],
        "--",
        color="grey",
        label=f"clean {metric}",
    )
    axes.plot(range(len(values)), [r["success_rate"] for r in rows], "s:", label="success rate")
    axes.set_xticks(range(len(values)), labels=labels, rotation=30)
    axes.set_xlabel(name)
    axes.set_ylim(-0.02, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=120)
    return path


def headline(model: ToolkitModel) -> list[str]:
    """The task's first two metrics (its headline first): the report's table."""
    return list(model.task.metric_names)[:2]


def report_table(report: dict[str, Any], metrics: Sequence[str]) -> str:
    rows = [
        [
            metric,
            f"{report['clean'].get(metric, math.nan):.4f}",
            f"{report['adversarial'].get(metric, math.nan):.4f}",
        ]
        for metric in metrics
    ]
    if "onnx_adversarial" in report:
        for row, metric in zip(rows, metrics, strict=True):
            row.append(f"{report['onnx_adversarial'].get(metric, math.nan):.4f}")
    header = [
        "metric",
        "clean",
        "adversarial",
        *(["adversarial (onnx)"] if "onnx_adversarial" in report else []),
    ]
    lines = [format_table(header, rows), ""]
    lines.append(
        format_table(
            ["", "value"],
            [
                [
                    "success rate",
                    f"{report['success_rate']:.4f} ({report['success_counted']} images counted)",
                ],
                [
                    "L-inf mean / max",
                    f"{report['linf_mean']:.5f} / {report['linf_max']:.5f} "
                    f"({report['linf_max'] * 255:.2f}/255)",
                ],
                ["L2 mean / max", f"{report['l2_mean']:.4f} / {report['l2_max']:.4f}"],
                ["images", str(report["images"])],
                ["attack time (s)", f"{report['attack_seconds']:.1f}"],
            ],
        )
    )
    return "\n".join(lines)


def run_attack_command(
    spec: Spec,
    model: ToolkitModel,
    out: Path,
    builder: Builder,
    *,
    sweep: str | None = None,
    onnx_path: Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Attack the spec's split with its attack; write attack.json, examples.png (and sweep.png, patch.png)."""
    from toolkit.attacks.run import attack_data, attack_section, build_attack, objective_of, run_attack_on

    check_attackable(model)
    section = attack_section(spec)
    sweep_values = parse_sweep(sweep) if sweep else None
    if sweep_values is not None:  # a bad name or value fails now, not after the main run
        for value in sweep_values[1]:
            build_attack(spec, builder, params={sweep_values[0]: value})
    attack = build_attack(spec, builder)
    objective, target_class = objective_of(attack, model)
    onnx = None
    if onnx_path is not None:
        from toolkit.export.runtime import OnnxModel

        onnx = OnnxModel(onnx_path, builder=builder, provider="cpu")
        check_transfer_model(onnx, model, onnx_path)
    data = attack_data(
        spec, model, section.split, builder, limit=section.max_images, batch_size=section.batch_size
    )
    out.mkdir(parents=True, exist_ok=True)  # every check passed: the report folder
    fit_if_needed(attack, model, spec, builder, show_progress=show_progress)
    files: dict[str, str] = {}
    if isinstance(attack, HasPatch) and attack.patch is not None:
        files["patch"] = str(attack.save(out / "patch.png"))
    total = sum(len(b) for b in data.batches)
    with _progress(total, f"attacking ({type(attack).__name__})", show_progress) as bar:
        report = run_attack_on(
            model, attack, data, objective=objective, target_class=target_class,
            score_threshold=section.score_threshold, onnx=onnx, keep=section.examples, progress=bar.update,
        )  # fmt: skip
    examples = report.pop("_examples")
    if examples:
        files["examples"] = str(examples_image(model, examples, out / "examples.png"))
    report.update(
        objective=objective, target_class=None if target_class is None else model.class_names[target_class]
    )
    report["attack"] = section.method.model_dump(mode="json")  # its type and parameters, as the spec says
    if isinstance(attack, HasPatch) and attack.patch is not None:
        height, width = model.input_size
        report["patch_pixels"] = [attack.side, attack.side]
        report["patch_fraction"] = attack.side**2 / (height * width)
    if sweep_values is not None:
        name, values = sweep_values
        rows = []
        for value in values:
            swept = build_attack(spec, builder, params={name: value})
            fit_if_needed(swept, model, spec, builder, show_progress=show_progress)
            with _progress(total, f"{name}={value:.4g}", show_progress) as bar:
                row = run_attack_on(
                    model, swept, data, objective=objective, target_class=target_class,
                    score_threshold=section.score_threshold, progress=bar.update,
                )  # fmt: skip
            row.pop("_examples")
            rows.append({name: value, **row})
        metric = headline(model)[-1]
        files["sweep"] = str(sweep_plot(name, values, rows, metric, out / "sweep.png"))
        report["sweep"] = rows
    report["files"] = files
    (out / "attack.json").write_text(strict_json.dumps(report) + "\n")
    files["report"] = str(out / "attack.json")
    return report


def print_report(report: dict[str, Any], model: ToolkitModel) -> None:
    print(report_table(report, headline(model)))
    if "sweep" in report:
        metric = headline(model)[-1]
        name = next(k for k in report["sweep"][0] if k not in ("clean", "adversarial"))
        print()
        print(
            format_table(
                [name, f"adversarial {metric}", "success rate"],
                [
                    [
                        f"{r[name]:.5g}",
                        f"{r['adversarial'].get(metric, math.nan):.4f}",
                        f"{r['success_rate']:.4f}",
                    ]
                    for r in report["sweep"]
                ],
            )
        )
    for key, path in report["files"].items():
        print(f"{key}: {path}")


def check_transfer_model(onnx: Any, model: ToolkitModel, path: Path) -> None:
    """Refuse an `--onnx` file that cannot score the attacked model's adversarial images: another
    task, other classes, no decoding, or a fixed input size other than the model's."""
    problems = []
    if onnx.task.name != model.task.name:
        problems.append(f"it is a {onnx.task.name} model, the checkpoint a {model.task.name} one")
    if list(onnx.class_names) != list(model.class_names):
        problems.append(
            f"its classes {onnx.class_names[:5]} differ from the checkpoint's {model.class_names[:5]}"
        )
    if not onnx.info.decoded:
        problems.append("it was exported with --no-decode")
    if not onnx.info.dynamic_hw and tuple(onnx.input_size) != tuple(model.input_size):
        problems.append(
            f"its input is {list(onnx.input_size)}, the checkpoint's {list(model.input_size)} (export it "
            "from this checkpoint, or with --dynamic batch,hw)"
        )
    if problems:
        raise ToolkitError(f"--onnx {path}: cannot score this attack's images: {'; '.join(problems)}")


def check_attackable(model: ToolkitModel) -> None:
    for part in (HasAttackObjectives, JudgesAttacks):
        if not isinstance(model.task, part):
            members = " and ".join(missing_members(model.task, part))
            raise ToolkitError(
                f"task {model.task.name!r} has no {members}: it cannot be attacked; see docs/attacks.md"
            )


def run(args: argparse.Namespace) -> int:
    """`toolkit attack SPEC --checkpoint CKPT | CKPT`: the report folder, the table."""

    target = Path(args.checkpoint or args.target)
    name = f"{target.parent.name}_{target.stem}" if is_checkpoint(target) else target.stem
    out = Path(args.out) if args.out else Path("runs") / "attack" / name
    check_output_dir(out, "--out")
    check_no_overwrite(out, list(ATTACK_FILES), "--out")
    if args.onnx and not Path(args.onnx).is_file():
        raise ToolkitError(f"--onnx {args.onnx!r} not found; export one with 'toolkit export'")
    if args.sweep:
        parse_sweep(args.sweep)  # a typo fails before torch is imported

    builder = Builder(args.manager)
    loaded = resolve_target(args.target, args.checkpoint, args.overrides, builder=builder)
    model = loaded.model
    report = run_attack_command(
        loaded.spec,
        model,
        out,
        builder,
        sweep=args.sweep,
        onnx_path=Path(args.onnx) if args.onnx else None,
        show_progress=not args.no_progress,
    )
    record_written(out, list(ATTACK_FILES))
    print_report(report, model)
    return 0
