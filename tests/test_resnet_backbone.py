"""ResNetBackbone: shapes, freezing, norm_eval, ImageNet weights and local files via toolkit.checkpoints."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from pydantic import ValidationError
from torch import nn

from toolkit.checkpoints import load_pretrained
from toolkit.contracts import IMAGENET_NORMALIZATION, FeatureInfo, FeatureLevel
from toolkit.errors import ToolkitError
from toolkit_plugins.backbones.centre_tap import CentreTapConv2d, use_plain_conv
from toolkit_plugins.backbones.resnet import ResNetParams, _input_multiple
from toolkit_plugins.backbones.resnet_modules import ResNetBackbone


def _bn_stats(module: nn.Module) -> list[torch.Tensor]:
    return [
        t.clone()
        for m in module.modules()
        if isinstance(m, nn.BatchNorm2d)
        for t in (m.running_mean, m.running_var)
    ]


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _changed(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(not torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _randomized_torchvision(depth: int, seed: int) -> nn.Module:
    """A torchvision ResNet with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18() if depth == 18 else torchvision.models.resnet50()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def tv18() -> nn.Module:
    return _randomized_torchvision(18, seed=1)


@pytest.fixture(scope="module")
def tv18_file(tmp_path_factory: pytest.TempPathFactory, tv18: nn.Module) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(tv18.state_dict(), path)
    return path


def _load(backbone: ResNetBackbone, path: Path) -> ResNetBackbone:
    """Load a local file as the builder does for `pretrained: PATH`."""
    load_pretrained(
        backbone,
        path,
        component=f"resnet{backbone.depth}",
        ignore_prefixes=ResNetBackbone.ignored_weight_prefixes,
    )
    return backbone


def _trunk(model: nn.Module) -> nn.Module:
    return nn.Sequential(*list(model.children())[:-2])  # drop avgpool and fc


@pytest.mark.parametrize(("depth", "channels"), [(18, 512), (50, 2048)])
@pytest.mark.parametrize(("height", "width"), [(64, 64), (96, 160)])
def test_output_shape(depth: int, channels: int, height: int, width: int) -> None:
    backbone = ResNetBackbone(depth).eval()
    assert backbone.out_channels == channels
    assert backbone.stride == 32
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, height, width))
    assert features.shape == (2, channels, height // 32, width // 32)


def test_torchvision_child_names_and_no_classifier() -> None:
    backbone = ResNetBackbone(18)
    names = [name for name, _ in backbone.named_children()]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    assert not any(k.startswith(("fc.", "avgpool")) for k in backbone.state_dict())


def test_invalid_depth_raises() -> None:
    with pytest.raises(ToolkitError, match="34"):
        ResNetBackbone(34)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_frozen_stages_requires_grad(k: int) -> None:
    backbone = ResNetBackbone(18, frozen_stages=k)
    assert backbone.frozen_stages == k
    frozen = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"][: k + 2] if k else []
    for name, param in backbone.named_parameters():
        assert param.requires_grad == (name.split(".")[0] not in frozen), name


def test_frozen_parts_unchanged_by_sgd_step() -> None:
    torch.manual_seed(0)
    backbone = ResNetBackbone(18, frozen_stages=2).train()
    frozen = [backbone.conv1, backbone.bn1, backbone.layer1, backbone.layer2]
    trainable = [backbone.layer3, backbone.layer4]
    before_frozen = [_params(m) for m in frozen]
    before_trainable = [_params(m) for m in trainable]
    optimizer = torch.optim.SGD(backbone.parameters(), lr=0.1)
    loss = backbone(torch.randn(2, 3, 64, 64)).square().mean()
    loss.backward()
    optimizer.step()
    for module, before in zip(frozen, before_frozen, strict=True):
        assert all(p.grad is None for p in module.parameters())
        assert _same(before, _params(module))
    for module, before in zip(trainable, before_trainable, strict=True):
        conv_weights_before = [t for t in before if t.dim() == 4]
        conv_weights_after = [p.detach() for p in module.parameters() if p.dim() == 4]
        assert _changed(conv_weights_before, conv_weights_after)


def test_norm_eval_keeps_frozen_batchnorm_statistics() -> None:
    torch.manual_seed(0)
    backbone = ResNetBackbone(18, frozen_stages=1, norm_eval=True).train()
    assert backbone.training
    assert not backbone.bn1.training
    assert not backbone.layer1[0].bn1.training
    assert backbone.layer2[0].bn1.training
    frozen_before = _bn_stats(backbone.bn1) + _bn_stats(backbone.layer1)
    free_before = _bn_stats(backbone.layer2)
    with torch.no_grad():
        for _ in range(2):
            backbone(torch.randn(2, 3, 64, 64) * 3 + 1)
    assert _same(frozen_before, _bn_stats(backbone.bn1) + _bn_stats(backbone.layer1))
    assert _changed(free_before, _bn_stats(backbone.layer2))


def test_norm_eval_survives_eval_then_train_and_parent_train() -> None:
    backbone = ResNetBackbone(18, frozen_stages=4, norm_eval=True)
    parent = nn.Sequential(backbone)
    parent.eval()
    parent.train()
    assert backbone.training
    batchnorms = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batchnorms and not any(m.training for m in batchnorms)
    assert backbone.train() is backbone


def test_without_norm_eval_frozen_batchnorm_statistics_move() -> None:
    torch.manual_seed(0)
    backbone = ResNetBackbone(18, frozen_stages=1, norm_eval=False).train()
    assert backbone.bn1.training
    before = _bn_stats(backbone.bn1) + _bn_stats(backbone.layer1)
    with torch.no_grad():
        backbone(torch.randn(2, 3, 64, 64) * 3 + 1)
    assert _changed(before, _bn_stats(backbone.bn1) + _bn_stats(backbone.layer1))
    assert not backbone.conv1.weight.requires_grad


def test_set_frozen_stages_refreezes_and_unfreezes() -> None:
    backbone = ResNetBackbone(18, frozen_stages=3).train()
    assert not backbone.layer3[0].conv1.weight.requires_grad
    assert not backbone.layer3[0].bn1.training
    backbone.set_frozen_stages(1)
    assert backbone.frozen_stages == 1
    assert not backbone.layer1[0].conv1.weight.requires_grad
    assert backbone.layer2[0].conv1.weight.requires_grad
    assert backbone.layer3[0].bn1.training
    assert not backbone.bn1.training
    backbone.set_frozen_stages(0)
    assert backbone.frozen_stages == 0
    assert all(p.requires_grad for p in backbone.parameters())
    assert all(m.training for m in backbone.modules())
    with pytest.raises(ToolkitError):
        backbone.set_frozen_stages(5)


def test_set_frozen_stages_in_eval_mode_keeps_eval() -> None:
    backbone = ResNetBackbone(18).eval()
    backbone.set_frozen_stages(2)
    assert not any(m.training for m in backbone.modules())


def test_frozen_stages_property_is_read_only() -> None:
    backbone = ResNetBackbone(18)
    with pytest.raises(AttributeError):
        backbone.frozen_stages = 2  # type: ignore[misc]


def test_loading_torchvision_state_dict_reproduces_features(tv18: nn.Module, tv18_file: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fc.* is ignored silently, nothing else is missing
        backbone = _load(ResNetBackbone(18), tv18_file).eval()
    images = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        expected = _trunk(tv18)(images)
        assert torch.equal(backbone(images), expected)
    fresh = ResNetBackbone(18).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(images), expected)


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: {"model": {f"backbone.{k}": v for k, v in sd.items()}}, id="model"),
        pytest.param(lambda sd: {"state_dict": sd, "epoch": 3}, id="state_dict"),
        pytest.param(lambda sd: {f"module.{k}": v for k, v in sd.items()}, id="ddp"),
        pytest.param(
            lambda sd: {
                "model": {
                    **{f"module.backbone.{k}": v for k, v in sd.items()},
                    "module.head.fc.weight": torch.zeros(3, 3),
                },
                "optimizer": {"lr": 0.1},
            },
            id="ddp-whole-model",
        ),
    ],
)
def test_checkpoint_layouts_load(tmp_path: Path, tv18: nn.Module, wrap) -> None:
    state = {k: v for k, v in tv18.state_dict().items() if not k.startswith("fc.")}
    path = tmp_path / "checkpoint.pt"
    torch.save(wrap(state), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backbone = _load(ResNetBackbone(18), path)
    loaded = backbone.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_wrong_architecture_raises_naming_file(tmp_path: Path) -> None:
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    with pytest.raises(ToolkitError, match=r"resnet50\.pth") as info:
        _load(ResNetBackbone(18), path)
    message = str(info.value)
    assert "shape mismatch" in message
    assert "is this a resnet18 state dict?" in message
    assert "layer1.0.conv1.weight" in message


def test_resnet18_file_into_resnet50_raises(tv18_file: Path) -> None:
    with pytest.raises(ToolkitError, match="is this a resnet50 state dict"):
        _load(ResNetBackbone(50), tv18_file)


def test_no_matching_key_raises(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ToolkitError, match=r"other\.pth.*no key matches.*'encoder\.weight'"):
        _load(ResNetBackbone(18), path)


def test_corrupt_file_raises_naming_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"this is not a pytorch file")
    with pytest.raises(ToolkitError, match=r"corrupt\.pth"):
        _load(ResNetBackbone(18), path)


def test_non_dict_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ToolkitError, match=r"tensor\.pth.*not a state dict"):
        _load(ResNetBackbone(18), path)


def test_missing_keys_warn_and_keep_loaded_values(tmp_path: Path, tv18: nn.Module) -> None:
    state = {k: v for k, v in tv18.state_dict().items() if not k.startswith("layer4.")}
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.warns(UserWarning, match=r"partial\.pth.*missing.*'layer4\.0\.bn1\.bias'") as record:
        backbone = _load(ResNetBackbone(18), path)
    assert len(record) == 1
    # BatchNorm fills a missing num_batches_tracked itself: those keys are not reported.
    n_missing = sum(
        1 for k in backbone.state_dict() if k.startswith("layer4.") and not k.endswith("num_batches_tracked")
    )
    assert f"({n_missing} in all)" in str(record[0].message)
    assert torch.equal(backbone.conv1.weight, state["conv1.weight"])


def test_unexpected_keys_warn(tmp_path: Path, tv18: nn.Module) -> None:
    state = dict(tv18.state_dict())
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "extra.pth"
    torch.save(state, path)
    with pytest.warns(UserWarning, match=r"extra\.pth.*1 unexpected key.*'extra\.weight'"):
        _load(ResNetBackbone(18), path)


def test_pretrained_then_frozen(tv18: nn.Module, tv18_file: Path) -> None:
    backbone = _load(ResNetBackbone(18, frozen_stages=4), tv18_file)
    assert not any(p.requires_grad for p in backbone.parameters())
    assert torch.equal(backbone.conv1.weight, tv18.conv1.weight)


@pytest.mark.parametrize("depth", [18, 50])
def test_last_stride_one_gives_stride_16_with_the_same_weights(depth: int, tv18_file: Path) -> None:
    backbone = ResNetBackbone(depth, last_stride=1).eval()
    assert backbone.stride == 16
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 96, 128))
    assert features.shape == (1, backbone.out_channels, 6, 8)
    shapes = {k: v.shape for k, v in backbone.state_dict().items()}
    assert shapes == {k: v.shape for k, v in ResNetBackbone(depth).state_dict().items()}
    if depth == 18:
        _load(ResNetBackbone(18, last_stride=1), tv18_file)  # a stride-32 file loads as is
    with pytest.raises(ToolkitError, match="last_stride must be 1 or 2"):
        ResNetBackbone(depth, last_stride=4)


def test_zero_init_residual_starts_blocks_as_identity() -> None:
    plain, zeroed = ResNetBackbone(18), ResNetBackbone(18, zero_init_residual=True)
    assert all(float(block.bn2.weight.detach().abs().sum()) > 0 for block in plain.layer1)
    for layer in (zeroed.layer1, zeroed.layer2, zeroed.layer3, zeroed.layer4):
        assert all(float(block.bn2.weight.detach().abs().sum()) == 0 for block in layer)


@pytest.mark.parametrize(("depth", "last_stride"), [(18, 2), (18, 1), (50, 2)])
def test_forward_levels_match_the_declared_levels_and_forward(depth: int, last_stride: int) -> None:
    torch.manual_seed(0)
    backbone = ResNetBackbone(depth, last_stride=last_stride).eval()
    expansion = 1 if depth == 18 else 4
    top_stride = 32 if last_stride == 2 else 16
    assert backbone.levels == (
        (64 * expansion, 4),
        (128 * expansion, 8),
        (256 * expansion, 16),
        (512 * expansion, top_stride),
    )
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        levels = backbone.forward_levels(images)
        last = backbone(images)
    assert [tuple(level.shape) for level in levels] == [
        (2, channels, 64 // stride, 96 // stride) for channels, stride in backbone.levels
    ]
    torch.testing.assert_close(levels[-1], last, rtol=0, atol=0)


def test_path_in_the_constructor_points_to_the_core(tv18_file: Path) -> None:
    with pytest.raises(ToolkitError, match=r"'none' or 'imagenet'.*toolkit\.checkpoints\.load_pretrained"):
        ResNetBackbone(18, pretrained=str(tv18_file))  # type: ignore[arg-type]


def test_params_accept_none_and_imagenet_only(tv18_file: Path) -> None:
    assert ResNetParams().pretrained == "none"
    assert ResNetParams(pretrained="imagenet").pretrained == "imagenet"
    with pytest.raises(ValidationError):
        ResNetParams(pretrained=str(tv18_file))  # a file is the core's `pretrained`, not the plugin's


@pytest.mark.parametrize(("last_stride", "multiple"), [(2, 32), (1, 16)])
def test_declared_contract_attributes(last_stride: int, multiple: int) -> None:
    backbone = ResNetBackbone(18, last_stride=last_stride)
    assert backbone.input_multiple == multiple == _input_multiple(ResNetParams(last_stride=last_stride))
    assert backbone.normalization == IMAGENET_NORMALIZATION
    assert backbone.ignored_weight_prefixes == ResNetBackbone.ignored_weight_prefixes == ("fc.",)
    assert isinstance(backbone.levels, FeatureInfo)
    assert backbone.levels[-1] == FeatureLevel(512, multiple)
    assert backbone.levels.channels() == [64, 128, 256, 512]


def test_imagenet_weights_load_through_toolkit_weights(
    monkeypatch: pytest.MonkeyPatch, tv18: nn.Module
) -> None:
    """`pretrained="imagenet"` loads torchvision's state dict (fc.* dropped silently); no download here."""
    state = dict(tv18.state_dict())
    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", lambda self, progress: state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backbone = ResNetBackbone(18, pretrained="imagenet").eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(backbone(images), _trunk(tv18)(images))
    del state["conv1.weight"]
    with pytest.warns(UserWarning, match=r"torchvision ResNet18_Weights\.IMAGENET1K_V1.*'conv1\.weight'"):
        ResNetBackbone(18, pretrained="imagenet")


def _plain_copy(backbone: ResNetBackbone) -> ResNetBackbone:
    """The same backbone with every convolution back to a plain `nn.Conv2d`."""
    plain = copy.deepcopy(backbone)
    use_plain_conv(plain)
    return plain


@pytest.mark.parametrize("depth", [18, 50])
def test_centre_tap_training_equals_the_plain_3x3_convolutions(depth: int) -> None:
    """On 32 x 32 images stage 4 runs on 1x1 maps: outputs and every gradient as with nn.Conv2d."""
    torch.manual_seed(0)
    backbone = ResNetBackbone(depth).train()
    turned = sum(isinstance(m, CentreTapConv2d) for m in backbone.modules())
    assert turned == 16, "every 3x3 convolution: 8 blocks x 2, or 16 bottlenecks x 1 (stem, 1x1s stay)"
    plain = _plain_copy(backbone).train()
    assert not any(isinstance(m, CentreTapConv2d) for m in plain.modules())
    images = torch.randn(8, 3, 32, 32)
    outputs = [model.forward_levels(images) for model in (backbone, plain)]
    assert outputs[0][-1].shape[-2:] == (1, 1)
    for ours, theirs in zip(*outputs, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    for levels in outputs:
        sum(level.square().mean() for level in levels).backward()
    for (name, ours), theirs in zip(backbone.named_parameters(), plain.parameters(), strict=True):
        error = (ours.grad - theirs.grad).norm() / theirs.grad.norm()
        assert error < 1e-4, f"{name}: relative gradient error {error:.2e}"
    centre = backbone.layer4[1].conv2.weight.grad
    assert centre[:, :, 1, 1].abs().sum() > 0 and centre[:, :, 0].abs().sum() == 0, "only the centre tap"


def test_centre_tap_is_only_taken_in_training_on_1x1_maps() -> None:
    """Evaluation, no-grad passes and larger maps run the plain convolution (export traces that)."""
    conv = ResNetBackbone(18).layer4[1].conv2
    assert isinstance(conv, CentreTapConv2d)
    calls: list[tuple[int, ...]] = []
    original = torch.nn.functional.conv2d

    def spy(x, weight, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(tuple(weight.shape[-2:]))
        return original(x, weight, *args, **kwargs)

    one, four = torch.randn(2, 512, 1, 1), torch.randn(2, 512, 4, 4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.functional, "conv2d", spy)
        conv.train()(one)
        conv.train()(four)
        with torch.no_grad():
            conv.train()(one)
        conv.eval()(one)
    assert calls == [(1, 1), (3, 3), (3, 3), (3, 3)], "the centre tap only for the first call"
