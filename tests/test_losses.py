"""Loss plugins: each term against hand-written references, numerical safety, params and errors."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torchvision.ops import sigmoid_focal_loss

from toolkit.errors import ToolkitError
from toolkit.plugins import PluginManager
from toolkit.registry import Registry
from toolkit_plugins.heads.centernet_targets import CenterNetTargetEncoder
from toolkit_plugins.losses.centernet_loss import CenterNetLoss, heatmap_focal_loss
from toolkit_plugins.losses.classification_losses import CrossEntropyLoss, SigmoidFocalLoss
from toolkit_plugins.losses.regression_losses import L1Loss

MODULES = [
    "toolkit_plugins.losses.centernet",
    "toolkit_plugins.losses.classification",
    "toolkit_plugins.losses.regression",
]


@pytest.fixture(scope="module")
def losses() -> Registry:
    manager = PluginManager(modules=MODULES, use_entry_points=False)
    assert manager.failed == []
    return manager.registry("loss")


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# ------------------------------------------------------------------------------- references


def _heatmap_focal_reference(
    logits: np.ndarray, target: np.ndarray, alpha: float = 2.0, beta: float = 4.0
) -> float:
    """CenterNet `_neg_loss` with `_sigmoid`'s clamp, pixel by pixel in float64."""
    pos_sum, neg_sum, num_pos = 0.0, 0.0, 0
    for x, y in zip(logits.astype(np.float64).ravel(), target.astype(np.float64).ravel(), strict=True):
        p = min(max(1.0 / (1.0 + math.exp(-x)), 1e-4), 1 - 1e-4)
        if y == 1:
            pos_sum += -((1 - p) ** alpha) * math.log(p)
            num_pos += 1
        else:
            neg_sum += -((1 - y) ** beta) * p**alpha * math.log(1 - p)
    return neg_sum if num_pos == 0 else (pos_sum + neg_sum) / num_pos


def _reg_l1_reference(feature: np.ndarray, index: np.ndarray, mask: np.ndarray, target: np.ndarray) -> float:
    """CenterNet `RegL1Loss`: |pred*mask - target*mask| summed / (mask over the K channels summed + 1e-4)."""
    n_images, channels, _, width = feature.shape
    total, count = 0.0, 0.0
    for n in range(n_images):
        for m in range(index.shape[1]):
            y, x = divmod(int(index[n, m]), width)
            for k in range(channels):
                total += abs(feature[n, k, y, x] * mask[n, m] - target[n, m, k] * mask[n, m])
                count += mask[n, m]
    return total / (count + 1e-4)


def _random_centernet_case(seed: int = 0, n: int = 2, c: int = 3, h: int = 5, w: int = 6, m: int = 4):
    gen = torch.Generator().manual_seed(seed)
    heatmap = torch.rand(n, c, h, w, generator=gen) * 0.9
    heatmap.view(-1)[torch.randperm(heatmap.numel(), generator=gen)[:5]] = 1.0
    outputs = {
        "heatmap": torch.randn(n, c, h, w, generator=gen) * 3,
        "size": torch.randn(n, 2, h, w, generator=gen) * 4,
        "offset": torch.rand(n, 2, h, w, generator=gen),
    }
    targets = {
        "heatmap": heatmap,
        "size": torch.rand(n, m, 2, generator=gen) * 8,
        "offset": torch.rand(n, m, 2, generator=gen),
        "index": torch.randint(0, h * w, (n, m), generator=gen),
        "mask": torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])[:n, :m],
    }
    return outputs, targets


# ------------------------------------------------------------------------------- centernet: heatmap


def test_heatmap_focal_hand_checked_two_pixels() -> None:
    # positive p=0.8: -(1-0.8)^2 log 0.8 = 0.04 * 0.2231435513 = 0.0089257421
    # negative y=0.5, p=0.3: -(1-0.5)^4 * 0.3^2 * log 0.7 = 0.0625 * 0.09 * 0.3566749439 = 0.0020062966
    logits = torch.tensor([_logit(0.8), _logit(0.3)]).reshape(1, 1, 1, 2)
    target = torch.tensor([1.0, 0.5]).reshape(1, 1, 1, 2)
    value = heatmap_focal_loss(logits, target)
    assert value.dim() == 0
    assert value.item() == pytest.approx(0.0089257421 + 0.0020062966, abs=1e-7)


def test_heatmap_focal_without_positives_is_the_negative_sum() -> None:
    logits = torch.tensor([_logit(0.3), _logit(0.6)]).reshape(1, 1, 2, 1)
    target = torch.tensor([0.5, 0.0]).reshape(1, 1, 2, 1)
    # 0.0020062966 + (1-0)^4 * 0.36 * -log 0.4 = 0.0020062966 + 0.36 * 0.9162907319
    expected = 0.0020062966 + 0.3298646635
    assert heatmap_focal_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("alpha", "beta"), [(2.0, 4.0), (1.5, 3.0), (0.0, 0.0)])
def test_heatmap_focal_matches_loop_reference(alpha: float, beta: float) -> None:
    outputs, targets = _random_centernet_case(seed=3)
    actual = heatmap_focal_loss(outputs["heatmap"], targets["heatmap"], alpha, beta)
    expected = _heatmap_focal_reference(outputs["heatmap"].numpy(), targets["heatmap"].numpy(), alpha, beta)
    assert actual.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("num_pos", [1, 2, 5])
def test_heatmap_focal_is_normalized_by_the_positive_count(num_pos: int) -> None:
    # positives at p = 0.8 each cost 0.0089257421; negatives (y = 0) at logit -100 are clamped to
    # p = 1e-4 and cost 1e-8 * -log(1 - 1e-4) ~ 1e-12: the mean over positives stays 0.0089257421
    logits = torch.full((1, 2, 3, 4), -100.0)
    target = torch.zeros(1, 2, 3, 4)
    cells = torch.tensor([0, 5, 7, 13, 22])[:num_pos]
    logits.view(-1)[cells] = _logit(0.8)
    target.view(-1)[cells] = 1.0
    assert heatmap_focal_loss(logits, target).item() == pytest.approx(0.0089257421, abs=1e-7)


def test_heatmap_focal_counts_positives_over_the_whole_batch() -> None:
    outputs, targets = _random_centernet_case(seed=5)
    twice = heatmap_focal_loss(
        torch.cat([outputs["heatmap"], outputs["heatmap"]]), torch.cat([targets["heatmap"]] * 2)
    )
    assert twice.item() == pytest.approx(heatmap_focal_loss(outputs["heatmap"], targets["heatmap"]).item())


@pytest.mark.parametrize("fill", [0.0, 1.0])
@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_heatmap_focal_is_finite_for_constant_targets_and_extreme_logits(fill: float, scale: float) -> None:
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(2, 3, 4, 4, generator=gen).sign() * scale).requires_grad_(True)
    target = torch.full((2, 3, 4, 4), fill)
    value = heatmap_focal_loss(logits, target)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()
    expected = _heatmap_focal_reference(logits.detach().numpy(), target.numpy())
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_heatmap_focal_clamps_extreme_logits_like_the_reference() -> None:
    # positive at logit -100 and negative (y = 0) at +100: each p is clamped 1e-4 from the wrong end
    # and costs (1 - 1e-4)^2 * -log(1e-4) = 0.99980001 * 9.2103403720 = 9.2084983401 (not ~100)
    logits = torch.tensor([-100.0, 100.0]).reshape(1, 1, 1, 2).requires_grad_(True)
    target = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)
    value = heatmap_focal_loss(logits, target)
    value.backward()
    assert value.item() == pytest.approx(2 * 9.2084983401, rel=1e-5)
    assert torch.isfinite(logits.grad).all()
    good = heatmap_focal_loss(-logits.detach(), target)
    assert 0 <= good.item() < 1e-6


def test_heatmap_focal_gradient_is_finite_and_useful() -> None:
    outputs, targets = _random_centernet_case(seed=2)
    logits = outputs["heatmap"].clone().requires_grad_(True)
    heatmap_focal_loss(logits, targets["heatmap"]).backward()
    assert torch.isfinite(logits.grad).all()
    positive = targets["heatmap"] == 1
    assert (logits.grad[positive] < 0).all()  # raising a positive's logit lowers the loss
    assert (logits.grad[~positive] >= 0).all()


# ------------------------------------------------------------------------------- centernet: size, offset


def test_size_offset_match_reg_l1_reference() -> None:
    outputs, targets = _random_centernet_case(seed=4)
    terms = CenterNetLoss(size_weight=1.0)(outputs, targets)
    for key in ("size", "offset"):
        expected = _reg_l1_reference(
            outputs[key].numpy(), targets["index"].numpy(), targets["mask"].numpy(), targets[key].numpy()
        )
        assert terms[key].item() == pytest.approx(expected, rel=1e-5), key


def _one_object_case(
    predicted_size: list[float], target_size: list[float], target_offset: list[float]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One object at cell (x=2, y=1) of a 3x4 map (slot 0); slot 1 is masked out with junk values.

    The predicted offset is 0 everywhere; the predicted size is `predicted_size` at the object's cell.
    """
    size = torch.zeros(1, 2, 3, 4)
    size[0, :, 1, 2] = torch.tensor(predicted_size)
    outputs = {"heatmap": torch.zeros(1, 1, 3, 4), "size": size, "offset": torch.zeros(1, 2, 3, 4)}
    targets = {
        "heatmap": torch.zeros(1, 1, 3, 4),
        "size": torch.tensor([[target_size, [9.0, 9.0]]]),
        "offset": torch.tensor([[target_offset, [0.5, 0.5]]]),
        "index": torch.tensor([[1 * 4 + 2, 0]]),
        "mask": torch.tensor([[1.0, 0.0]]),  # the second slot is empty and must not count
    }
    return outputs, targets


def test_size_l1_hand_checked_is_divided_by_two_per_object() -> None:
    # one object at cell (x=2, y=1) of a 3x4 map: prediction (3, 5), target (2, 7): (1 + 2) / (2 + 1e-4)
    outputs, targets = _one_object_case([3.0, 5.0], [2.0, 7.0], [0.0, 0.0])
    terms = CenterNetLoss(size_weight=1.0)(outputs, targets)
    assert terms["size"].item() == pytest.approx(3.0 / (2 + 1e-4), rel=1e-6)
    assert terms["offset"].item() == 0.0


def test_size_offset_read_only_object_centres_and_respect_the_mask() -> None:
    outputs, targets = _random_centernet_case(seed=6)
    loss = CenterNetLoss()
    before = loss(outputs, targets)
    active = targets["mask"] > 0
    n_idx, m_idx = torch.nonzero(active, as_tuple=True)
    centre = torch.zeros(2, 5 * 6, dtype=torch.bool)
    centre[n_idx, targets["index"][n_idx, m_idx]] = True
    changed = {key: value.clone() for key, value in outputs.items()}
    for key in ("size", "offset"):
        flat = changed[key].view(2, 2, -1)
        flat.masked_fill_(~centre.unsqueeze(1), 1000.0)  # every non-centre cell
    targets_changed = {key: value.clone() for key, value in targets.items()}
    targets_changed["size"][~active] = -500.0  # masked slots: their values must not count
    targets_changed["offset"][~active] = 77.0
    after = loss(changed, targets_changed)
    for key in ("size", "offset"):
        assert after[key].item() == pytest.approx(before[key].item(), rel=1e-6), key
    n0, m0 = int(n_idx[0]), int(m_idx[0])
    cell = int(targets["index"][n0, m0])
    changed["size"].view(2, 2, -1)[n0, 0, cell] += 10.0  # a centre cell: the term moves
    assert loss(changed, targets_changed)["size"].item() > before["size"].item()


def test_centernet_weights_scale_each_term_and_loss_is_their_sum() -> None:
    outputs, targets = _random_centernet_case(seed=7)
    unit = CenterNetLoss(heatmap_weight=1.0, size_weight=1.0, offset_weight=1.0)(outputs, targets)
    weighted = CenterNetLoss(heatmap_weight=2.0, size_weight=0.5, offset_weight=3.0)(outputs, targets)
    assert set(weighted) == {"heatmap", "size", "offset", "loss"}
    for key, weight in (("heatmap", 2.0), ("size", 0.5), ("offset", 3.0)):
        assert weighted[key].item() == pytest.approx(weight * unit[key].item(), rel=1e-6)
    total = weighted["heatmap"] + weighted["size"] + weighted["offset"]
    assert weighted["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    assert all(value.dim() == 0 for value in weighted.values())
    zero = CenterNetLoss(heatmap_weight=0.0, size_weight=0.0, offset_weight=0.0)(outputs, targets)
    assert zero["loss"].item() == 0.0


def test_centernet_registered_defaults_and_gradients(losses: Registry) -> None:
    entry = losses.get("centernet")
    loss = entry.build({})
    assert (loss.heatmap_weight, loss.size_weight, loss.offset_weight) == (1.0, 0.1, 1.0)
    assert (loss.alpha, loss.beta) == (2.0, 4.0)
    outputs, targets = _random_centernet_case(seed=8)
    outputs = {key: value.requires_grad_(True) for key, value in outputs.items()}
    terms = loss(outputs, targets)
    unit = CenterNetLoss(size_weight=1.0)(outputs, targets)
    assert terms["size"].item() == pytest.approx(0.1 * unit["size"].item(), rel=1e-6)
    terms["loss"].backward()
    assert all(torch.isfinite(value.grad).all() for value in outputs.values())
    with pytest.raises(ValidationError):
        entry.params.model_validate({"size_weight": -1.0})
    with pytest.raises(ValidationError):
        entry.params.model_validate({"gamma": 2.0})


def test_centernet_perfect_prediction_on_encoder_targets_is_near_zero() -> None:
    encoder = CenterNetTargetEncoder(num_classes=3, output_stride=4, input_size=(64, 64), max_objects=8)
    images = [
        (torch.tensor([[4.0, 6.0, 30.0, 22.0], [33.0, 35.0, 61.0, 63.0]]), torch.tensor([0, 2])),
        (torch.tensor([[10.0, 40.0, 21.0, 57.0]]), torch.tensor([1])),
    ]
    encoded = [encoder(boxes, labels) for boxes, labels in images]
    targets = {key: torch.stack([sample[key] for sample in encoded]) for key in encoded[0]}
    assert targets["mask"].sum().item() == 3
    h, w = encoder.output_size
    outputs = {
        "heatmap": torch.where(targets["heatmap"] == 1, 30.0, -30.0),
        "size": torch.zeros(2, 2, h, w),
        "offset": torch.zeros(2, 2, h, w),
    }
    for n, m in zip(*torch.nonzero(targets["mask"], as_tuple=True), strict=True):
        y, x = divmod(int(targets["index"][n, m]), w)
        outputs["size"][n, :, y, x] = targets["size"][n, m]
        outputs["offset"][n, :, y, x] = targets["offset"][n, m]
    loss = CenterNetLoss()
    terms = loss(outputs, targets)
    assert terms["size"].item() < 1e-6
    assert terms["offset"].item() < 1e-6
    assert terms["heatmap"].item() < 1e-6
    # the same maps one cell to the right are no longer perfect
    shifted = {key: torch.roll(value, 1, dims=3) for key, value in outputs.items()}
    worse = loss(shifted, targets)
    assert worse["size"].item() > 0.1 and worse["offset"].item() > 0.01 and worse["heatmap"].item() > 1


def test_centernet_missing_keys_and_shape_mismatch_are_named() -> None:
    outputs, targets = _random_centernet_case()
    with pytest.raises(
        ToolkitError, match=r"targets have no 'index' \(available: heatmap, mask, offset, size\)"
    ):
        CenterNetLoss()(outputs, {k: v for k, v in targets.items() if k != "index"})
    with pytest.raises(ToolkitError, match=r"model outputs have no 'size'"):
        CenterNetLoss()({k: v for k, v in outputs.items() if k != "size"}, targets)
    with pytest.raises(ToolkitError, match="heatmap output has shape"):
        CenterNetLoss()(outputs, {**targets, "heatmap": targets["heatmap"][:, :2]})


# ------------------------------------------------------------------------------- classification


def _cross_entropy_reference(
    logits: np.ndarray, labels: np.ndarray, weights: np.ndarray, smoothing: float
) -> float:
    """Weighted, smoothed: sum_i [(1-e) w_y (-log p_y) + e/C sum_c w_c (-log p_c)] / sum_i w_y."""
    num, den = 0.0, 0.0
    n, c = logits.shape
    for i in range(n):
        shifted = logits[i] - logits[i].max()
        log_p = shifted - math.log(sum(math.exp(v) for v in shifted))
        y = int(labels[i])
        num += (1 - smoothing) * weights[y] * -log_p[y]
        num += smoothing / c * sum(weights[k] * -log_p[k] for k in range(c))
        den += weights[y]
    return num / den


@pytest.mark.parametrize(
    ("smoothing", "weights"),
    [(0.0, None), (0.1, None), (0.0, [1.0, 2.0, 0.5, 3.0]), (0.2, [1.0, 2.0, 0.5, 3.0])],
)
def test_cross_entropy_matches_torch_and_formula(
    losses: Registry, smoothing: float, weights: list[float] | None
) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=gen, dtype=torch.float64) * 2
    labels = torch.tensor([0, 3, 1, 1, 2, 3])
    loss = losses.get("cross_entropy").build(
        {"label_smoothing": smoothing, "class_weights": weights}, num_classes=4
    )
    terms = loss({"logits": logits}, {"label": labels})
    assert set(terms) == {"cross_entropy", "loss"}
    weight_tensor = None if weights is None else torch.tensor(weights, dtype=torch.float64)
    expected = F.cross_entropy(logits, labels, weight=weight_tensor, label_smoothing=smoothing)
    torch.testing.assert_close(terms["cross_entropy"], expected)
    assert terms["loss"] is terms["cross_entropy"]
    reference = _cross_entropy_reference(
        logits.numpy(), labels.numpy(), np.ones(4) if weights is None else np.array(weights), smoothing
    )
    assert terms["loss"].item() == pytest.approx(reference, rel=1e-9)


def test_cross_entropy_hand_checked() -> None:
    # logits (0, ln 3): p = (1/4, 3/4); label 1: -log 0.75 = 0.2876820725
    logits = torch.tensor([[0.0, math.log(3.0)]])
    value = CrossEntropyLoss(2)({"logits": logits}, {"label": torch.tensor([1])})["loss"]
    assert value.item() == pytest.approx(0.2876820725, abs=1e-6)


def test_cross_entropy_wrong_class_weights_length(losses: Registry) -> None:
    entry = losses.get("cross_entropy")
    with pytest.raises(ToolkitError, match=r"class_weights has 3 values but the model has 5 classes") as info:
        entry.build({"class_weights": [1.0, 2.0, 3.0]}, num_classes=5)
    assert "one weight per class" in str(info.value)
    entry.build({"class_weights": [1.0, 2.0, 3.0]}, num_classes=3)  # the right length builds


def test_cross_entropy_params_exclude_injected_num_classes(losses: Registry) -> None:
    params = losses.get("cross_entropy").params
    assert set(params.model_fields) == {"label_smoothing", "class_weights"}
    for bad in ({"label_smoothing": 1.0}, {"label_smoothing": -0.1}, {"class_weights": [1.0, -2.0]}):
        with pytest.raises(ValidationError):
            params.model_validate(bad)
    with pytest.raises(ValidationError):
        params.model_validate({"num_classes": 3})


def test_cross_entropy_weights_follow_the_module_device_and_stay_out_of_state_dict() -> None:
    loss = CrossEntropyLoss(3, class_weights=[1.0, 2.0, 3.0])
    assert loss.class_weights is not None and loss.class_weights.tolist() == [1.0, 2.0, 3.0]
    assert "class_weights" not in loss.state_dict()
    with pytest.raises(ToolkitError, match="logits have 4 classes but the loss was built for 3"):
        loss({"logits": torch.zeros(2, 4)}, {"label": torch.zeros(2, dtype=torch.int64)})


def _sigmoid_focal_reference(logits: np.ndarray, labels: np.ndarray, alpha: float, gamma: float) -> float:
    """RetinaNet focal loss per class on one-hot labels, summed, divided by the batch size."""
    total = 0.0
    n, c = logits.shape
    for i in range(n):
        for k in range(c):
            t = 1.0 if k == labels[i] else 0.0
            p = 1 / (1 + math.exp(-logits[i, k]))
            ce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
            p_t = p * t + (1 - p) * (1 - t)
            alpha_t = alpha * t + (1 - alpha) * (1 - t)
            total += alpha_t * ce * (1 - p_t) ** gamma
    return total / n


@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (0.5, 0.0), (0.9, 1.5)])
def test_sigmoid_focal_matches_torchvision_and_formula(losses: Registry, alpha: float, gamma: float) -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 3, generator=gen, dtype=torch.float64) * 2
    labels = torch.tensor([0, 2, 1, 2, 0])
    terms = losses.get("sigmoid_focal").build({"alpha": alpha, "gamma": gamma})(
        {"logits": logits}, {"label": labels}
    )
    assert set(terms) == {"focal", "loss"}
    one_hot = F.one_hot(labels, 3).to(logits.dtype)
    expected = sigmoid_focal_loss(logits, one_hot, alpha=alpha, gamma=gamma, reduction="mean") * 3
    torch.testing.assert_close(terms["focal"], expected)
    assert terms["loss"].item() == pytest.approx(
        _sigmoid_focal_reference(logits.numpy(), labels.numpy(), alpha, gamma)
    )


def test_sigmoid_focal_defaults_and_missing_key(losses: Registry) -> None:
    loss = losses.get("sigmoid_focal").build({})
    assert (loss.alpha, loss.gamma) == (0.25, 2.0)
    assert isinstance(loss, SigmoidFocalLoss)
    with pytest.raises(
        ToolkitError, match=r"sigmoid_focal loss: targets have no 'label' \(available: labels\)"
    ):
        loss({"logits": torch.zeros(2, 3)}, {"labels": torch.zeros(2, dtype=torch.int64)})


# ------------------------------------------------------------------------------- l1


def test_l1_values_and_weight(losses: Registry) -> None:
    outputs = {"depth": torch.tensor([[1.0, -2.0], [3.0, 0.5]])}
    targets = {"depth_gt": torch.tensor([[0.0, 2.0], [3.0, 1.5]])}
    # |1| + |-4| + |0| + |-1| = 6 over 4 elements
    terms = losses.get("l1").build({"output_key": "depth", "target_key": "depth_gt"})(outputs, targets)
    assert set(terms) == {"l1", "loss"}
    assert terms["l1"].item() == pytest.approx(1.5)
    weighted = L1Loss("depth", "depth_gt", weight=0.2)(outputs, targets)
    assert weighted["loss"].item() == pytest.approx(0.3)
    with pytest.raises(ValidationError):
        losses.get("l1").params.model_validate({"output_key": "depth"})


def test_l1_missing_key_lists_available_ones_and_shapes_must_match() -> None:
    loss = L1Loss("depht", "depth_gt")
    with pytest.raises(
        ToolkitError, match=r"l1 loss: model outputs have no 'depht' \(available: depth, mask\)"
    ):
        loss({"depth": torch.zeros(2), "mask": torch.zeros(2)}, {"depth_gt": torch.zeros(2)})
    with pytest.raises(ToolkitError, match=r"targets have no 'depth_gt' \(available: none\)"):
        L1Loss("depth", "depth_gt")({"depth": torch.zeros(2)}, {})
    with pytest.raises(ToolkitError, match=r"output 'depth' has shape \(2, 1\) but target 'depth_gt'"):
        L1Loss("depth", "depth_gt")({"depth": torch.zeros(2, 1)}, {"depth_gt": torch.zeros(2)})


# ------------------------------------------------------------------------------- registration


def test_registration_modules_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from toolkit.plugins import PluginManager\n"
        f"manager = PluginManager(modules={MODULES!r}, use_entry_points=False)\n"
        "assert not manager.failed, manager.failed\n"
        "print(manager.registry('loss').names(), 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['centernet', 'cross_entropy', 'l1', 'sigmoid_focal'] False"


def test_centernet_giou_term_hand_checked() -> None:
    # one object at cell (x=2, y=1) of a 3x4 map. Target: size (2, 2), offset (1, 0) -> box [0,-1,2,1]
    # relative to the cell. Prediction: size (2, 2), offset (0, 0) -> box [-1,-1,1,1]. IoU 2/6, the
    # enclosing box [-1,-1,2,1] has area 6 = the union, so GIoU = 1/3 and the term 2/3 (per object).
    outputs, targets = _one_object_case([2.0, 2.0], [2.0, 2.0], [1.0, 0.0])
    terms = CenterNetLoss(giou_weight=3.0)(outputs, targets)
    assert terms["giou"].item() == pytest.approx(3.0 * (2 / 3) / (1 + 1e-4), rel=1e-5)
    total = terms["heatmap"] + terms["size"] + terms["offset"] + terms["giou"]
    assert terms["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    # a perfect box costs nothing; the default (giou_weight 0) has no giou term at all
    outputs["offset"][0, :, 1, 2] = torch.tensor([1.0, 0.0])
    assert CenterNetLoss(giou_weight=3.0)(outputs, targets)["giou"].item() == pytest.approx(0.0, abs=1e-6)
    assert "giou" not in CenterNetLoss()(outputs, targets)


def test_centernet_giou_term_is_finite_for_negative_and_zero_sizes() -> None:
    outputs, targets = _random_centernet_case(seed=9)
    outputs["size"] = (-outputs["size"]).requires_grad_(True)  # an untrained size branch may go negative
    terms = CenterNetLoss(giou_weight=1.0)(outputs, targets)
    assert torch.isfinite(terms["giou"]) and 1.0 <= terms["giou"].item() <= 2.0
    terms["loss"].backward()
    assert torch.isfinite(outputs["size"].grad).all()
