"""The light detector family: ResNet `width`, the depthwise-separable CenterNet head, and each light
recipe built, trained a step, exported and verified against torch; the built-in one end to end
through int8, fp16, predict, attack and the fine-tuning path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import REPO, run_cli_here
from torch import nn
from torchvision.transforms.functional import to_pil_image

from toolkit.build import build_model, load_model
from toolkit.engine.trainer import train
from toolkit.errors import ToolkitError
from toolkit.export.onnx_export import export_onnx
from toolkit.export.precision import convert_fp16
from toolkit.export.verify import verify_export
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec
from toolkit_plugins.backbones.resnet_modules import ResNetBackbone, scaled_channels
from toolkit_plugins.heads.centernet_modules import CenterNetHead

LIGHT_RECIPES = [
    "configs/centernet_resnet18_light.yaml",
    "configs/centernet_resnet18_nano.yaml",
    "configs/centernet_mobilenetv4_light.yaml",
]
FULL_WIDTH = REPO / "configs" / "centernet_resnet18_shapes.yaml"  # the demo's model before the light family
SMALL_RUN = [
    "model.input_size=64",
    "data.train.length=4",
    "data.train.image_size=64",
    "data.val.length=2",
    "data.val.image_size=64",
    "data.batch_size=2",
    "train.time_limit=null",
    "train.epochs=1",
]
#: enough steps (5 s) for a heatmap with structure: an untrained one is flat, and its top-K peaks tie
TRAINED_RUN = [*SMALL_RUN, "data.train.length=64", "train.epochs=4"]


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


def model_spec(checkpoint: str) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["spec"]


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- the parts ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("depth", "width", "channels"), [(18, 0.5, (32, 64, 128, 256)), (50, 0.25, (64, 128, 256, 512))]
)
def test_width_scales_every_stage(depth: int, width: float, channels: tuple[int, ...]) -> None:
    backbone = ResNetBackbone(depth, width=width, zero_init_residual=True).eval()
    assert [level_channels for level_channels, _ in backbone.levels] == list(channels)
    assert backbone.out_channels == channels[-1]
    with torch.no_grad():
        outputs = backbone.forward_levels(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape[1:]) for o in outputs] == [
        (c, 64 // s, 96 // s) for c, s in zip(channels, (4, 8, 16, 32), strict=True)
    ]
    full = ResNetBackbone(depth)
    ratio = parameters(backbone) / parameters(full)
    assert width**2 * 0.8 < ratio < width**2 * 1.2  # convolutions scale with in x out channels
    last_norms = [
        m.bn2 if depth == 18 else m.bn3 for stage in (backbone.layer1, backbone.layer4) for m in stage
    ]
    assert all(torch.count_nonzero(norm.weight) == 0 for norm in last_norms)  # identity blocks at start
    stem = backbone.conv1.weight
    assert float(stem.detach().std()) == pytest.approx(
        (2 / (stem.shape[0] * 49)) ** 0.5, rel=0.2
    )  # torchvision's fan_out init


def test_full_width_is_torchvisions_resnet() -> None:
    keys = set(ResNetBackbone(18, width=1.0).state_dict())
    assert keys == {k for k in torchvision.models.resnet18().state_dict() if not k.startswith("fc.")}
    assert scaled_channels(64, 0.3) == 16 and scaled_channels(64, 0.01) == 8  # multiples of 8, never below


def test_imagenet_weights_need_full_width() -> None:
    with pytest.raises(ToolkitError, match=r"width 1 only, got width 0.5; set pretrained: none or width: 1"):
        ResNetBackbone(18, width=0.5, pretrained="imagenet")


def test_a_bad_width_is_a_spec_error(manager: PluginManager) -> None:
    result = run_cli_here("validate", str(REPO / LIGHT_RECIPES[0]), "model.backbone.width=0")
    assert result.returncode == 2
    assert "model.backbone.width" in result.stderr and "greater than 0" in result.stderr


def test_separable_head_keeps_the_outputs_with_a_fraction_of_the_weights() -> None:
    levels = [(32, 4), (64, 8), (128, 16), (256, 32)]
    options = {"neck_channels": (64, 48, 32), "head_conv": 32, "skips": True, "levels": levels}
    torch.manual_seed(0)
    standard = CenterNetHead(256, 32, 3, **options).eval()
    separable = CenterNetHead(256, 32, 3, separable=True, **options).eval()
    features = [torch.rand(2, c, 128 // s, 128 // s) for c, s in levels]
    with torch.no_grad():
        expected, got = standard(features), separable(features)
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in expected.items()}
    assert got["heatmap"].shape == (2, 3, 32, 32)
    depthwise = [m for m in separable.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 3 + 3 + 3  # laterals, neck stages, branches
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert parameters(separable) < 0.3 * parameters(standard)
    decoded = separable.decode(got)
    assert decoded["boxes"].shape == (2, 100, 4) and decoded["scores"].shape == (2, 100)


# -- each light recipe ---------------------------------------------------------------------------
@pytest.mark.parametrize("config", LIGHT_RECIPES)
def test_recipe_trains_a_step_and_exports_verified(
    tmp_path: Path, manager: PluginManager, config: str
) -> None:
    spec = load_spec(REPO / config, SMALL_RUN, plugins=manager)
    light = build_model(spec, plugins=manager)
    full = build_model(load_spec(FULL_WIDTH, plugins=manager), plugins=manager)
    assert parameters(light) < 0.3 * parameters(full)
    summary = train(spec, out_dir=tmp_path / "run", plugins=manager, show_progress=False)
    assert summary.steps == 2
    model = load_model(summary.files["last"], plugins=manager).eval()
    # The head's raw outputs, element by element: after one step the heatmap is nearly flat (logits
    # within ~0.01), so top-K peaks of neighbouring cells tie within float noise and the decoded
    # sets are no test of the export; the decoded graph is checked on a trained-like model in
    # test_builtin_light_recipe_end_to_end (export verification) and in test_export.py.
    result = export_onnx(model, tmp_path / "light.onnx", spec=spec.model_dump(mode="json"), decode=False)
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)]
    check = verify_export(
        model, result.path, names=result.outputs, decode=False, dynamic_hw=False, samples=images
    )
    assert check.passed, check.table()
    assert sorted(result.outputs) == ["heatmap", "offset", "size"]
    assert {c.shape[0] for c in check.checks} >= {1, 3}


def test_builtin_light_recipe_end_to_end(tmp_path: Path, manager: PluginManager) -> None:
    """Trained by the CLI, then int8 and fp16 exports, predict with the int8 file, an attack and a
    fine-tuning start from its backbone: the light model goes every way the others go."""
    config = str(REPO / LIGHT_RECIPES[0])
    run = tmp_path / "run"
    trained = run_cli_here("train", config, *TRAINED_RUN, "--out", str(run), "--no-progress")
    assert trained.returncode == 0, trained.stderr
    checkpoint = str(run / "best.pt")
    exported = run_cli_here("export", checkpoint, "-o", str(tmp_path / "light_int8.onnx"), "--int8")
    assert exported.returncode == 0, exported.stderr
    assert "quantized to int8" in exported.stdout and "MISMATCH" not in exported.stdout
    # fp16 on the raw head outputs, element by element, at a tolerance for fp16 logits: a model this
    # briefly trained has near-tied heatmap peaks whose top-K order fp16 may change (a trained
    # one's decoded outputs pass `toolkit export --fp16`'s check: docs/models.md)
    model = load_model(checkpoint, plugins=manager).eval()
    raw = export_onnx(model, tmp_path / "raw.onnx", spec=model_spec(checkpoint), decode=False)
    convert_fp16(raw.path, tmp_path / "raw_fp16.onnx")
    check = verify_export(
        model, tmp_path / "raw_fp16.onnx", names=raw.outputs, decode=False, dynamic_hw=False, tolerance=2e-2
    )
    assert check.passed, check.table()
    images = tmp_path / "images"
    images.mkdir()
    from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

    for index in range(2):
        to_pil_image(ShapesDataset(length=2, image_size=96, seed=3)[index][0]).save(images / f"{index}.png")
    predicted = run_cli_here(
        "predict",
        str(tmp_path / "light_int8.onnx"),
        str(images),
        "--out",
        str(tmp_path / "pred"),
        "--threshold",
        "0.01",
    )
    assert predicted.returncode == 0, predicted.stderr
    records = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert [Path(record["image"]).name for record in records] == ["0.png", "1.png"]
    assert all(len(record["boxes"]) == len(record["scores"]) > 0 for record in records)
    attacked = run_cli_here(
        "attack", checkpoint, "attack.method={type: fgsm, eps: 0.01}", "--out", str(tmp_path / "attack"),
        "--no-progress",
    )  # fmt: skip
    assert attacked.returncode == 0, attacked.stderr
    report = json.loads((tmp_path / "attack" / "attack.json").read_text())
    assert report["images"] == 2 and 0 < report["linf_max"] <= 0.01 + 1e-6

    weights = tmp_path / "light_backbone.pt"
    torch.save(model.backbone.state_dict(), weights)
    spec = load_spec(config, [*SMALL_RUN, f"model.backbone.pretrained={weights}"], plugins=manager)
    started = build_model(spec, plugins=manager)
    saved = model.backbone.state_dict()
    differ = [
        key for key, value in started.backbone.state_dict().items() if not torch.equal(value, saved[key])
    ]
    assert not differ
