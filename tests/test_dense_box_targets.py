"""TTFNet's dense box targets for CenterNet (`box_region`): every cell near a centre learns the whole box."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from conftest import FIXTURE_PLUGINS
from test_trainer import DETECTION, train_records
from torchvision.ops import generalized_box_iou_loss

import toolkit
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec
from toolkit_plugins.heads.centernet_targets import CenterNetTargetEncoder
from toolkit_plugins.losses.centernet_loss import CenterNetLoss, dense_giou

STRIDE = 4


def encode(boxes: list[list[float]], region: float = 0.54) -> dict[str, torch.Tensor]:
    encoder = CenterNetTargetEncoder(2, STRIDE, (64, 64), box_region=region)
    return encoder(torch.tensor(boxes), torch.zeros(len(boxes), dtype=torch.int64))


def test_each_cell_of_the_region_holds_the_box_and_the_weights_sum_to_log_area() -> None:
    targets = encode([[8.0, 4.0, 56.0, 36.0]])  # 12 x 8 cells, centre cell (8, 5)
    weight, box = targets["box_weight"], targets["box"]
    cells = weight > 0
    # the region: within int(0.54 * 12 / 2) = 3 cells in x and int(0.54 * 8 / 2) = 2 in y
    assert cells.sum() == 7 * 5 and cells[3:8, 5:12].all()
    assert weight.sum().item() == pytest.approx(math.log(48 * 32), rel=1e-5)
    assert weight.argmax().item() == 5 * 16 + 8, "the centre cell weighs most"
    assert torch.equal(box[:, cells].T.unique(dim=0), torch.tensor([[2.0, 1.0, 14.0, 9.0]]))
    assert "box" not in encode([[8.0, 4.0, 56.0, 36.0]], region=0.0), "0: CenterNet's targets only"


def test_a_smaller_object_wins_the_cells_it_shares_and_no_object_means_no_weight() -> None:
    targets = encode([[0.0, 0.0, 64.0, 64.0], [24.0, 24.0, 40.0, 40.0]])
    box = targets["box"]
    assert box[:, 8, 8].tolist() == [6.0, 6.0, 10.0, 10.0], "the small box at its own centre"
    assert box[:, 8, 5].tolist() == [0.0, 0.0, 16.0, 16.0], "the large box elsewhere"
    empty = encode([])
    assert empty["box_weight"].sum() == 0 and empty["box"].shape == (4, 16, 16)
    with pytest.raises(ValueError, match="box_region"):
        CenterNetTargetEncoder(1, STRIDE, (64, 64), box_region=1.5)


def test_dense_giou_is_the_weighted_mean_of_torchvisions_giou_loss() -> None:
    torch.manual_seed(0)
    targets = encode([[8.0, 4.0, 56.0, 36.0], [4.0, 40.0, 20.0, 60.0]])
    size, offset = torch.rand(1, 2, 16, 16) * 10, torch.randn(1, 2, 16, 16)
    weight, box = targets["box_weight"][None], targets["box"][None]
    value = dense_giou(size, offset, box, weight)
    expected, total = 0.0, 0.0
    for y, x in (weight[0] > 0).nonzero().tolist():
        w, h = size[0, :, y, x].tolist()
        cx, cy = x + offset[0, 0, y, x].item(), y + offset[0, 1, y, x].item()
        pred = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
        loss = generalized_box_iou_loss(pred, box[0, :, y, x][None], eps=1e-7).item()
        expected += weight[0, y, x].item() * loss
        total += weight[0, y, x].item()
    assert value.item() == pytest.approx(expected / (total + 1e-4), rel=1e-5)
    exact_size = (box[:, 2:] - box[:, :2]).clone()
    grid = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="xy"))
    exact_offset = (box[:, :2] + box[:, 2:]) / 2 - grid
    assert dense_giou(exact_size, exact_offset, box, weight).item() == pytest.approx(0.0, abs=1e-6)


def test_the_loss_uses_the_dense_term_when_the_targets_carry_it() -> None:
    targets = {k: v[None] for k, v in encode([[8.0, 4.0, 56.0, 36.0]]).items()}
    outputs = {
        "heatmap": torch.zeros(1, 2, 16, 16),
        "size": torch.full((1, 2, 16, 16), 4.0),
        "offset": torch.zeros(1, 2, 16, 16),
    }
    terms = CenterNetLoss(giou_weight=2.0)(outputs, targets)
    expected = dense_giou(outputs["size"], outputs["offset"], targets["box"], targets["box_weight"])
    assert terms["giou"].item() == pytest.approx(2.0 * expected.item())
    assert "giou" not in CenterNetLoss()(outputs, targets)


def test_a_detector_with_dense_box_targets_trains_through_the_loader(tmp_path: Path) -> None:
    """One fixed batch of 4 images, 25 steps through a DataLoader worker: the dense GIoU term falls."""
    spec = copy.deepcopy(DETECTION)
    spec["model"]["head"]["box_region"] = 0.54
    spec["data"] = {**spec["data"], "augment": [{"type": "resize"}], "num_workers": 1}
    spec["data"]["train"] = {**spec["data"]["train"], "length": 4}
    del spec["data"]["val"]
    spec["train"] = {
        **spec["train"],
        "epochs": 25,
        "loss": {"type": "centernet", "giou_weight": 2.0},
        "optimizer": {"type": "adam", "lr": 0.003},
        "schedule": {"type": "constant"},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FIXTURE_PLUGINS))
        manager = PluginManager()
        toolkit.train(
            load_spec(spec, plugins=manager), out_dir=tmp_path / "run", plugins=manager, show_progress=False
        )
    giou = [r["loss"]["giou"] for r in train_records(tmp_path / "run")]
    assert len(giou) == 25 and giou[-1] < 0.7 * giou[0], giou
