"""CenterNet and classification heads: shapes, initialisation, decode contract."""

from __future__ import annotations

import math
import pickle

import pydantic
import pytest
import torch

from toolkit.errors import ToolkitError
from toolkit.registry import ComponentEntry, Registry
from toolkit_plugins.heads import centernet as centernet_plugin
from toolkit_plugins.heads.centernet_modules import CenterNetHead
from toolkit_plugins.heads.centernet_targets import CenterNetTargetEncoder
from toolkit_plugins.heads.classification_modules import ClassificationHead, ClassificationTargetEncoder

# ----------------------------------------------------------------------------------- centernet


def _outputs(n: int, c: int, h: int, w: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "heatmap": torch.randn(n, c, h, w, generator=gen) * 3,
        "size": torch.rand(n, 2, h, w, generator=gen) * 40,
        "offset": torch.rand(n, 2, h, w, generator=gen),
    }


def test_centernet_attributes() -> None:
    head = CenterNetHead(512, 32, 5, max_detections=7)
    assert head.task == "detection"
    assert head.num_classes == 5
    assert head.max_detections == 7
    assert head.output_stride == 4
    assert head.out_channels == 64
    assert CenterNetHead(512, 32, 5, neck_channels=(32, 16)).output_stride == 8
    assert CenterNetHead(512, 32, 5, neck_channels=(32, 16)).out_channels == 16


def test_centernet_rejects_indivisible_stride() -> None:
    with pytest.raises(ToolkitError, match="stride 8"):
        CenterNetHead(64, 8, 2, neck_channels=(16, 16, 16, 16))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(("height", "width"), [(64, 64), (96, 128), (128, 96)])
def test_centernet_forward_shapes(batch: int, height: int, width: int) -> None:
    torch.manual_seed(0)
    head = CenterNetHead(512, 32, 4).eval()
    features = torch.randn(batch, 512, height // 32, width // 32)
    with torch.no_grad():
        out = head(features)
    assert set(out) == {"heatmap", "size", "offset"}
    assert out["heatmap"].shape == (batch, 4, height // 4, width // 4)
    assert out["size"].shape == (batch, 2, height // 4, width // 4)
    assert out["offset"].shape == (batch, 2, height // 4, width // 4)


def test_centernet_initialisation() -> None:
    torch.manual_seed(0)
    head = CenterNetHead(512, 32, 3)
    heat_bias = head.heatmap[-1].bias
    assert torch.allclose(heat_bias, torch.full_like(heat_bias, -2.19))
    for branch in (head.size, head.offset):
        assert torch.count_nonzero(branch[-1].bias) == 0
        assert 0.0005 < branch[-1].weight.std().item() < 0.002
    deconvs = [m for m in head.neck.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in deconvs] == [(512, 256), (256, 128), (128, 64)]
    assert all(m.bias is None and m.kernel_size == (4, 4) and m.stride == (2, 2) for m in deconvs)
    # Initial heatmap probabilities sit near the sigmoid(-2.19) prior, not at 0.5.
    with torch.no_grad():
        probs = head.eval()(torch.randn(1, 512, 2, 2))["heatmap"].sigmoid()
    assert 0.0 < probs.mean().item() < 0.3


@pytest.mark.parametrize("batch", [1, 3])
def test_centernet_decode_contract(batch: int) -> None:
    head = CenterNetHead(512, 32, 3, max_detections=20)
    h, w = 24, 32
    det = head.decode(_outputs(batch, 3, h, w))
    assert det["boxes"].shape == (batch, 20, 4)
    assert det["scores"].shape == (batch, 20)
    assert det["labels"].shape == (batch, 20)
    assert det["boxes"].dtype == torch.float32
    assert det["labels"].dtype == torch.int64
    scores = det["scores"]
    assert torch.all(scores[:, :-1] >= scores[:, 1:])
    assert torch.all((scores >= 0) & (scores <= 1))
    boxes = det["boxes"]
    assert torch.all(boxes >= 0)
    assert torch.all(boxes[..., 0::2] <= w * 4)
    assert torch.all(boxes[..., 1::2] <= h * 4)
    assert torch.all(boxes[..., 2:] >= boxes[..., :2])  # sizes are positive here
    assert torch.all((det["labels"] >= 0) & (det["labels"] < 3))
    # Boxes reaching outside the image (size up to 40 cells on a 24x32 map) were clamped.
    assert torch.any(boxes[..., 0] == 0) and torch.any(boxes[..., 2] == w * 4)


def test_centernet_decode_single_known_peak() -> None:
    head = CenterNetHead(512, 32, 3, max_detections=10)
    n, c, h, w = 1, 3, 16, 16
    heatmap = torch.full((n, c, h, w), -10.0)
    heatmap[0, 1, 5, 7] = 2.0  # the peak
    heatmap[0, 1, 5, 8] = 1.5  # neighbours, lower: suppressed by the 3x3 max-pool
    heatmap[0, 1, 4, 7] = 1.0
    heatmap[0, 2, 10, 2] = 0.5  # a second, weaker but isolated peak: kept
    size = torch.zeros(n, 2, h, w)
    offset = torch.zeros(n, 2, h, w)
    size[0, :, 5, 7] = torch.tensor([4.0, 2.0])
    offset[0, :, 5, 7] = torch.tensor([0.5, 0.25])
    det = head.decode({"heatmap": heatmap, "size": size, "offset": offset})

    expected = torch.tensor([(7.5 - 2) * 4, (5.25 - 1) * 4, (7.5 + 2) * 4, (5.25 + 1) * 4])
    assert torch.equal(det["boxes"][0, 0], expected)
    assert det["labels"][0, 0].item() == 1
    assert det["scores"][0, 0].item() == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-7)
    assert det["labels"][0, 1].item() == 2
    assert det["scores"][0, 1].item() == pytest.approx(1 / (1 + math.exp(-0.5)), abs=1e-7)
    assert torch.equal(det["boxes"][0, 1], torch.tensor([8.0, 40.0, 8.0, 40.0]))
    for suppressed in (1.5, 1.0):
        prob = 1 / (1 + math.exp(-suppressed))
        assert not torch.any(torch.isclose(det["scores"][0], torch.tensor(prob)))
    assert torch.all(det["scores"][0, 2:] < 1e-4)


def test_centernet_decode_peak_per_image_and_class() -> None:
    """The flat index maps back to the right (image, class, y, x) on a non-square map."""
    head = CenterNetHead(64, 32, 4, max_detections=1)
    n, c, h, w = 3, 4, 6, 10
    heatmap = torch.full((n, c, h, w), -8.0)
    peaks = [(3, 0, 9), (0, 5, 0), (2, 2, 4)]  # (class, y, x) per image
    for i, (cls, y, x) in enumerate(peaks):
        heatmap[i, cls, y, x] = 3.0
    zeros = torch.zeros(n, 2, h, w)
    det = head.decode({"heatmap": heatmap, "size": zeros, "offset": zeros})
    assert det["labels"][:, 0].tolist() == [cls for cls, _, _ in peaks]
    centres = det["boxes"][:, 0, :2] / 4
    assert centres.tolist() == [[float(x), float(y)] for _, y, x in peaks]


def test_centernet_decode_caps_k_at_map_size() -> None:
    head = CenterNetHead(512, 32, 2, max_detections=1000)
    det = head.decode(_outputs(2, 2, 4, 4))
    assert det["scores"].shape == (2, 32)
    assert det["boxes"].shape == (2, 32, 4)
    assert det["labels"].shape == (2, 32)


def test_centernet_end_to_end_decode() -> None:
    torch.manual_seed(0)
    head = CenterNetHead(512, 32, 3, max_detections=50).eval()
    with torch.no_grad():
        det = head.decode(head(torch.randn(2, 512, 3, 4)))
    assert det["boxes"].shape == (2, 50, 4)
    assert torch.all(det["boxes"][..., 0::2] <= 128) and torch.all(det["boxes"][..., 1::2] <= 96)


def _centernet_entry() -> ComponentEntry:
    registry = Registry("head", injected=("in_channels", "stride", "num_classes"))
    centernet_plugin.toolkit_register_heads(registry)
    return registry.get("centernet")


def test_centernet_target_params_reach_the_encoder() -> None:
    entry = _centernet_entry()
    head = entry.build({"max_objects": 7, "min_overlap": 0.5}, in_channels=64, stride=32, num_classes=4)
    assert (head.max_objects, head.min_overlap) == (7, 0.5)
    encoder = head.target_encoder((96, 160))
    assert isinstance(encoder, CenterNetTargetEncoder)
    assert (encoder.num_classes, encoder.output_stride, encoder.input_size) == (4, 4, (96, 160))
    assert (encoder.max_objects, encoder.min_overlap) == (7, 0.5)
    out = encoder(torch.tensor([[8.0, 8.0, 40.0, 40.0]]), torch.tensor([3]))
    assert out["heatmap"].shape == (4, 24, 40) and out["size"].shape == (7, 2)
    # A head with two neck stages has output stride 8: the encoder follows it.
    coarse = CenterNetHead(64, 32, 2, neck_channels=(32, 16)).target_encoder((64, 64))
    assert coarse.output_stride == 8 and coarse.output_size == (8, 8)
    assert (coarse.max_objects, coarse.min_overlap) == (128, 0.7)


@pytest.mark.parametrize(
    "params",
    [{"max_objects": 0}, {"max_objects": 1001}, {"min_overlap": 0.0}, {"min_overlap": 1.0}],
)
def test_centernet_target_params_are_validated(params: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        _centernet_entry().params.model_validate(params)


def test_centernet_target_param_defaults() -> None:
    defaults = _centernet_entry().params.model_validate({})
    assert (defaults.max_objects, defaults.min_overlap) == (128, 0.7)


# ------------------------------------------------------------------------------ classification


@pytest.mark.parametrize("batch", [1, 4])
def test_classification_shapes_and_decode(batch: int) -> None:
    torch.manual_seed(0)
    head = ClassificationHead(512, 32, 7).eval()
    assert head.task == "classification"
    with torch.no_grad():
        out = head(torch.randn(batch, 512, 3, 2))
    assert set(out) == {"logits"}
    assert out["logits"].shape == (batch, 7)
    det = head.decode(out)
    assert det["probs"].shape == (batch, 7)
    assert torch.allclose(det["probs"].sum(dim=1), torch.ones(batch))
    assert det["labels"].dtype == torch.int64
    assert det["labels"].shape == (batch,)
    assert torch.equal(det["labels"], out["logits"].argmax(dim=1))


def test_classification_decode_known_logits() -> None:
    head = ClassificationHead(8, 32, 3)
    det = head.decode({"logits": torch.tensor([[0.0, 0.0, math.log(2.0)], [5.0, 1.0, 1.0]])})
    assert det["labels"].tolist() == [2, 0]
    assert torch.allclose(det["probs"][0], torch.tensor([0.25, 0.25, 0.5]))


def test_classification_pools_globally() -> None:
    head = ClassificationHead(4, 32, 2).eval()
    features = torch.randn(1, 4, 3, 5)
    with torch.no_grad():
        logits = head(features)["logits"]
        expected = head.fc(features.mean(dim=(2, 3)))
    assert torch.allclose(logits, expected, atol=1e-6)


def test_classification_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    head = ClassificationHead(256, 32, 5, dropout=0.5)
    features = torch.randn(4, 256, 2, 2)
    head.eval()
    with torch.no_grad():
        assert torch.equal(head(features)["logits"], head(features)["logits"])
        eval_logits = head(features)["logits"]
        head.train()
        train_logits = head(features)["logits"]
    assert not torch.allclose(train_logits, eval_logits)


def test_classification_target_encoder() -> None:
    encoder = ClassificationHead(8, 32, 5).target_encoder((64, 64))
    assert isinstance(encoder, ClassificationTargetEncoder)
    for label in (3, torch.tensor(3), torch.tensor([3])):
        out = encoder(label)
        assert set(out) == {"label"}
        assert out["label"].dtype == torch.int64 and out["label"].shape == () and out["label"].item() == 3
    assert pickle.loads(pickle.dumps(encoder))(4)["label"].item() == 4
    for bad in (5, -1, torch.tensor(5)):
        with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
            encoder(bad)
    for bad in (torch.tensor(1.0), torch.tensor([1, 2]), 1.0, True):
        with pytest.raises(ValueError, match="label must be"):
            encoder(bad)


# ------------------------------------------------------------------------------ skip connections
RESNET18_LEVELS = ((64, 4), (128, 8), (256, 16), (512, 32))


def _levels(batch: int, height: int, width: int, levels=RESNET18_LEVELS) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(batch, c, height // s, width // s, generator=gen) for c, s in levels]


def test_centernet_skips_pick_the_level_at_each_stage_stride() -> None:
    head = CenterNetHead(512, 32, 3, skips=True, levels=RESNET18_LEVELS)
    assert head.uses_levels
    assert head.skip_levels == (2, 1, 0)  # stride 16, 8, 4
    stride16 = ((64, 4), (128, 8), (256, 16), (512, 16))  # last_stride 1: the neck starts at 16
    head16 = CenterNetHead(512, 16, 3, neck_channels=(128, 64), skips=True, levels=stride16)
    assert head16.skip_levels == (1, 0)
    assert [lateral[0].in_channels for lateral in head16.laterals] == [128, 64]
    assert not CenterNetHead(512, 32, 3).uses_levels


@pytest.mark.parametrize(("height", "width"), [(64, 64), (96, 128)])
def test_centernet_skips_forward_shapes_and_use_every_level(height: int, width: int) -> None:
    torch.manual_seed(0)
    head = CenterNetHead(512, 32, 4, skips=True, levels=RESNET18_LEVELS).eval()
    levels = _levels(2, height, width)
    with torch.no_grad():
        out = head(levels)
    assert out["heatmap"].shape == (2, 4, height // 4, width // 4)
    for index in range(4):  # changing any level changes the heatmap: each one is wired in
        changed = [level.clone() for level in levels]
        changed[index] += 1.0
        with torch.no_grad():
            assert not torch.allclose(head(changed)["heatmap"], out["heatmap"])


def test_centernet_skips_need_levels() -> None:
    with pytest.raises(ToolkitError, match="skips need a backbone that provides feature levels"):
        CenterNetHead(512, 32, 3, skips=True, levels=None)
    with pytest.raises(ToolkitError, match=r"level at stride 4 .* offers strides 8, 16"):
        CenterNetHead(512, 32, 3, skips=True, levels=((128, 8), (256, 16), (512, 32)))


def test_centernet_skips_factory_receives_levels() -> None:
    registry = Registry("head", injected=("in_channels", "stride", "num_classes", "levels"))
    registry.register("centernet", centernet_plugin.centernet)
    entry = registry.get("centernet")
    assert "levels" not in entry.params.model_fields
    head = entry.build({"skips": True}, in_channels=512, stride=32, num_classes=2, levels=RESNET18_LEVELS)
    assert head.uses_levels and len(head.laterals) == 3


def test_classification_max_pooling_reads_the_strongest_cell() -> None:
    head = ClassificationHead(2, 32, 2, pooling="max").eval()
    with torch.no_grad():
        head.fc.weight.copy_(torch.eye(2))
        head.fc.bias.zero_()
        features = torch.zeros(1, 2, 4, 4)
        features[0, 0, 3, 1] = 5.0  # one strong cell: max pooling keeps it, average would give 5/16
        features[0, 1] = 1.0
        logits = head(features)["logits"]
    torch.testing.assert_close(logits, torch.tensor([[5.0, 1.0]]))
    avg = ClassificationHead(2, 32, 2).eval()
    with torch.no_grad():
        avg.fc.weight.copy_(torch.eye(2))
        avg.fc.bias.zero_()
        torch.testing.assert_close(avg(features)["logits"], torch.tensor([[5.0 / 16, 1.0]]))
    with pytest.raises(ToolkitError, match="pooling must be 'avg' or 'max'"):
        ClassificationHead(2, 32, 2, pooling="mean")
