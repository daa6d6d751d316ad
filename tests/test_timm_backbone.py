"""The `timm` backbone (optional extra `toolkit[timm]`): levels from timm's feature_info, timm's key
names through the core's weight loading, freezing, training and prediction with both heads, the CLI
with and without timm. Offline: nothing here downloads (random weights; HF_HUB_OFFLINE for the one
`pretrained: imagenet` case)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, run_cli
from torch import nn

import toolkit
from toolkit.build import build_model
from toolkit.contracts import IMAGENET_NORMALIZATION, Normalization
from toolkit.errors import ToolkitError
from toolkit.plugins import PluginManager
from toolkit.registry import MissingExtraError, Registry, missing_extra_hint

needs_timm = pytest.mark.skipif(
    importlib.util.find_spec("timm") is None,
    reason="the timm extra is not installed: pip install -e '.[timm]'",
)
EXAMPLE = REPO / "configs/centernet_timm_mobilenet.yaml"
#: (channels, stride) of every level timm offers, finest first
LEVELS = {
    "resnet10t": [(64, 2), (64, 4), (128, 8), (256, 16), (512, 32)],
    "mobilenetv3_small_050": [(16, 2), (8, 4), (16, 8), (24, 16), (288, 32)],
}
HEADS = {
    "centernet": {"type": "centernet", "skips": True, "neck_channels": [16, 16, 16], "head_conv": 8},
    "classification": {"type": "classification"},
}
#: runs toolkit's CLI with timm made unimportable (as if the extra were not installed)
WITHOUT_TIMM = """
import sys
sys.modules["timm"] = None  # `import timm` fails, importlib.util.find_spec("timm") is None
from toolkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


def _spec(model_name: str, head: str, **backbone: Any) -> dict[str, Any]:
    return {
        "model": {
            "backbone": {"type": "timm", "model_name": model_name, **backbone},
            "head": HEADS[head],
            "input_size": 64,
            "class_names": ["circle", "square", "triangle"],
        }
    }


def _without_timm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TIMM, *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


# -- the backbone -----------------------------------------------------------------------------
@needs_timm
@pytest.mark.parametrize("model_name", sorted(LEVELS))
def test_levels_are_timms_feature_info(model_name: str) -> None:
    from toolkit_plugins.backbones.timm_modules import TimmBackbone

    backbone = TimmBackbone(model_name=model_name)
    assert list(backbone.levels) == LEVELS[model_name]
    assert (backbone.out_channels, backbone.stride, backbone.input_multiple) == (
        LEVELS[model_name][-1][0],
        32,
        32,
    )
    maps = backbone.forward_levels(torch.rand(2, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(2, c, 64 // s, 96 // s) for c, s in LEVELS[model_name]]
    assert torch.equal(
        backbone(torch.zeros(1, 3, 64, 64)), backbone.forward_levels(torch.zeros(1, 3, 64, 64))[-1]
    )

    chosen = TimmBackbone(model_name=model_name, out_indices=[2, 4])
    assert list(chosen.levels) == [LEVELS[model_name][2], LEVELS[model_name][4]]


@needs_timm
def test_normalization_is_the_models_pretrained_config(manager: PluginManager) -> None:
    mobilevit = build_model(_spec("mobilevit_xxs", "classification"), plugins=manager)
    assert mobilevit.backbone.normalization == Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert mobilevit.normalization == mobilevit.backbone.normalization  # the model applies it
    resnet = build_model(_spec("resnet10t", "classification"), plugins=manager)
    assert resnet.normalization == IMAGENET_NORMALIZATION


@needs_timm
def test_a_timm_state_dict_loads_through_the_core(tmp_path: Path, manager: PluginManager) -> None:
    """ConvNeXt's features_only wrapper renames `stages.0` to `stages_0`; files keep timm's names."""
    import timm

    torch.manual_seed(1)
    reference = timm.create_model("convnext_atto")  # the classification model, head included
    expected = reference.state_dict()
    file = tmp_path / "convnext_atto.pt"
    torch.save(expected, file)
    spec = _spec("convnext_atto", "classification", out_indices=[1, 2, 3], pretrained=str(file))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the head and the dropped stem output load silently
        model = build_model(spec, plugins=manager)
    loaded = model.backbone.state_dict()
    assert "stages.1.blocks.0.conv_dw.weight" in loaded and not any("stages_" in key for key in loaded)
    assert all(torch.equal(value, expected[key]) for key, value in loaded.items())

    # a whole toolkit model's weights (e.g. a checkpoint's) load into a fresh backbone, and back
    whole = tmp_path / "model.pt"
    torch.save({"model": model.state_dict()}, whole)
    again = build_model(
        _spec("convnext_atto", "classification", out_indices=[1, 2, 3], pretrained=str(whole))
    )
    assert all(torch.equal(v, loaded[k]) for k, v in again.backbone.state_dict().items())
    fresh = build_model(_spec("convnext_atto", "classification", out_indices=[1, 2, 3]), plugins=manager)
    fresh.load_state_dict(model.state_dict())  # strict
    assert all(torch.equal(v, loaded[k]) for k, v in fresh.backbone.state_dict().items())

    # a key the file lacks is reported under timm's name
    del expected["stages.2.blocks.0.conv_dw.weight"]
    torch.save(expected, file)
    with pytest.warns(UserWarning, match=r"1 timm key\(s\) missing.*'stages\.2\.blocks\.0\.conv_dw\.weight'"):
        build_model(spec, plugins=manager)


@needs_timm
def test_frozen_stages_freeze_the_modules_of_the_first_levels() -> None:
    from toolkit_plugins.backbones.timm_modules import TimmBackbone

    backbone = TimmBackbone(model_name="resnet10t", frozen_stages=2).train()  # levels: act1, layer1, ...
    frozen = {name for name, p in backbone.named_parameters() if not p.requires_grad}
    assert frozen and all(name.startswith(("body.conv1.", "body.bn1.", "body.layer1.")) for name in frozen)
    assert all(p.requires_grad for name, p in backbone.named_parameters() if name.startswith("body.layer2."))
    assert not backbone.body.layer1[0].bn1.training and backbone.body.layer2[0].bn1.training  # norm_eval
    before = {
        name: t.clone() for name, t in backbone.state_dict().items() if name.startswith(("bn1.", "layer1."))
    }
    optimizer = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    backbone(torch.rand(2, 3, 64, 64)).square().mean().backward()
    optimizer.step()
    after = backbone.state_dict()
    assert all(torch.equal(value, after[name]) for name, value in before.items())  # weights and BN stats

    backbone.set_frozen_stages(0)
    assert all(p.requires_grad for p in backbone.parameters())
    with pytest.raises(ToolkitError, match=r"frozen_stages must be in 0\.\.5"):
        backbone.set_frozen_stages(6)


# -- training and prediction with both heads --------------------------------------------------
@needs_timm
@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("model_name", sorted(LEVELS))
def test_one_training_step_then_predict(
    tmp_path: Path, manager: PluginManager, model_name: str, head: str
) -> None:
    import timm

    from toolkit.engine.trainer import train
    from toolkit.spec import load_spec

    task = "detection" if head == "centernet" else "classification"
    target = {} if head == "centernet" else {"target": "triangle"}
    spec = _spec(model_name, head)
    if head == "classification":
        spec["model"]["class_names"] = ["absent", "present"]
    spec["data"] = {
        "train": {"type": "shapes", "task": task, "length": 2, "image_size": 64, "seed": 0, **target},
        "augment": [{"type": "resize"}],
        "batch_size": 2,
        "num_workers": 0,
    }
    spec["train"] = {"epochs": 1, "optimizer": {"type": "adamw", "lr": 1.0e-3}, "device": "cpu"}
    summary = train(
        load_spec(spec, plugins=manager), out_dir=tmp_path / "run", plugins=manager, show_progress=False
    )
    assert summary.steps == 1
    checkpoint = torch.load(summary.files["last"], map_location="cpu", weights_only=False)
    timm_keys = {f"backbone.{key}" for key in timm.create_model(model_name).state_dict()}
    backbone_keys = {key for key in checkpoint["model"] if key.startswith("backbone.")}
    assert backbone_keys and backbone_keys <= timm_keys  # saved under timm's names
    torch.manual_seed(0)  # the trainer's default train.seed: the same initial weights
    initial = build_model(spec, plugins=manager).state_dict()
    stem = next(key for key in checkpoint["model"] if key.startswith("backbone."))
    assert not torch.equal(initial[stem], checkpoint["model"][stem])  # the step reached the stem

    model = toolkit.load_model(summary.files["last"], plugins=manager)
    assert all(torch.equal(v, checkpoint["model"][k]) for k, v in model.state_dict().items())
    images = [
        torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8),
        torch.randint(0, 256, (3, 48, 80), dtype=torch.uint8),
    ]
    results = model.predict(images)
    assert len(results) == 2
    if head == "centernet":
        for result, (height, width) in zip(results, [(64, 64), (48, 80)], strict=True):
            boxes = torch.as_tensor(result["boxes"]).reshape(-1, 4)
            assert boxes.shape[0] == len(result["scores"]) == len(result["labels"]) > 0
            assert torch.all(
                (boxes[:, 0] >= 0) & (boxes[:, 2] <= width) & (boxes[:, 1] >= 0) & (boxes[:, 3] <= height)
            )
    else:
        for result in results:
            probs = torch.as_tensor(result["probs"])
            assert probs.shape == (2,) and abs(float(probs.sum()) - 1) < 1e-5
            assert result["class_name"] in ("absent", "present")


# -- the CLI, the registry -------------------------------------------------------------------
@needs_timm
def test_plugins_lists_timm_without_importing_it() -> None:
    code = (
        "import sys\nfrom toolkit.cli import main\nassert main(['plugins', '--json']) == 0\n"
        "assert not {'timm', 'torch'} & set(sys.modules), sorted({'timm', 'torch'} & set(sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert result.returncode == 0, result.stderr
    backbones = {c["name"]: c for c in json.loads(result.stdout)["components"]["backbone"]}
    assert backbones["timm"]["plugin"] == "toolkit.timm"
    assert set(backbones["timm"]["params"]["properties"]) == {
        "model_name", "pretrained", "out_indices", "frozen_stages", "norm_eval"
    }  # fmt: skip


def test_without_timm_it_is_not_listed() -> None:
    result = _without_timm("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert "timm" not in {c["name"] for c in listing["components"]["backbone"]}
    assert "toolkit.timm" in {p["name"] for p in listing["plugins"] if p["status"] == "loaded"}


def test_without_timm_a_spec_naming_it_says_which_extra_to_install() -> None:
    result = _without_timm("validate", str(EXAMPLE))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"toolkit: error: {EXAMPLE}: 1 problem in the spec:",
        "  model.backbone.type: backbone 'timm' needs the optional extra: pip install 'toolkit[timm]'",
    ]


def test_the_registry_names_the_extra_of_a_missing_optional_component(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # not importable
    hint = "backbone 'timm' needs the optional extra: pip install 'toolkit[timm]'"
    assert missing_extra_hint("backbone", "timm") == hint
    assert missing_extra_hint("backbone", "resnet19") is None
    assert missing_extra_hint("head", "timm") is None
    with pytest.raises(MissingExtraError) as caught:
        Registry("backbone").get("timm", path="model.backbone.type")
    assert str(caught.value) == f"model.backbone.type: {hint}"
    assert isinstance(caught.value, ToolkitError) and caught.value.exit_code == 2


@needs_timm
def test_with_timm_installed_there_is_no_extra_to_name() -> None:
    assert missing_extra_hint("backbone", "timm") is None  # a disabled plugin gets the usual message


@needs_timm
def test_example_spec_validates() -> None:
    result = run_cli("validate", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"{EXAMPLE}: valid (timm + centernet, 3 classes, input 128x128, multiple of 32)"
    )


@needs_timm
def test_unknown_timm_model_or_level_is_a_user_error(manager: PluginManager) -> None:
    with pytest.raises(ToolkitError) as caught:
        build_model(_spec("resnet19", "classification"), plugins=manager)
    assert str(caught.value) == (
        "timm backbone: unknown timm model 'resnet19' (did you mean resnet18 or resnet61q or resnet51q?); "
        "list them with python -c 'import timm; print(timm.list_models())'"
    )
    with pytest.raises(ToolkitError, match=r"out_indices in 0\.\.4 \(its 5 feature levels\)$"):
        build_model(_spec("resnet10t", "classification", out_indices=[1, 5]), plugins=manager)


@needs_timm
def test_imagenet_weights_offline_say_how_to_give_a_file(tmp_path: Path) -> None:
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "TORCH_HOME": str(tmp_path)}
    overrides = ["model.backbone.model_name=mobilenetv3_small_050", "model.backbone.pretrained=imagenet"]
    result = run_cli("build", str(EXAMPLE), *overrides, env=offline)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("toolkit: error: timm backbone: could not get timm's pretrained weights for ")
    assert line.endswith("and set pretrained: weights.pt")


@needs_timm
def test_the_backbone_is_a_module_with_levels() -> None:
    from toolkit.contracts import Freezable, HasInputMultiple, HasLevels, HasNormalization, IgnoresWeightKeys
    from toolkit_plugins.backbones.timm_modules import TimmBackbone

    backbone = TimmBackbone(model_name="mobilenetv3_small_050")
    assert isinstance(backbone, nn.Module)
    for protocol in (HasLevels, Freezable, HasNormalization, IgnoresWeightKeys, HasInputMultiple):
        assert isinstance(backbone, protocol), protocol
    assert {"classifier.weight", "conv_head.weight"} <= set(backbone.ignored_weight_prefixes)
