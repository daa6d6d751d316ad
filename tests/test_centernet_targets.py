"""CenterNet target encoder: vectorized encoder vs the loop reference, hand-checked cases, round trip."""

from __future__ import annotations

import functools
import math
import pickle
import warnings

import pytest
import torch
from centernet_reference import encode_reference_loop, gaussian_radius, gaussian_radius_reference
from torchvision import tv_tensors

from toolkit_plugins.heads import centernet_targets
from toolkit_plugins.heads.centernet_modules import CenterNetHead
from toolkit_plugins.heads.centernet_targets import CenterNetTargetEncoder

KEYS = ("heatmap", "size", "offset", "index", "mask")


def _reference(encoder: CenterNetTargetEncoder, boxes: torch.Tensor, labels: torch.Tensor) -> dict:
    return encode_reference_loop(
        boxes,
        labels,
        num_classes=encoder.num_classes,
        output_stride=encoder.output_stride,
        input_size=encoder.input_size,
        max_objects=encoder.max_objects,
        min_overlap=encoder.min_overlap,
    )


def _assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert set(actual) == set(KEYS)
    for key in KEYS:
        assert actual[key].dtype == expected[key].dtype, key
        assert actual[key].shape == expected[key].shape, key
        torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=0, msg=key)


def _boxes(*rows: tuple[float, float, float, float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def _random_case(
    gen: torch.Generator, num: int, height: int, width: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes of every scale (cubed sizes favour tiny ones), some beyond the image, some corners."""
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(num, 2, generator=gen) * size * 1.2 - size * 0.1
    wh = torch.rand(num, 2, generator=gen) ** 3 * size * 1.5 + 0.1
    boxes = torch.cat([centre - wh / 2, centre + wh / 2], dim=1)
    corners = torch.tensor(
        [
            [0, 0, 9, 13],
            [width - 21, 0, width, 7],
            [0, height - 5, 30, height],
            [width - 3, height - 3, width, height],
            [0, 0, width, 6],  # flat boxes along the edges: gaussians clipped by the border
            [width - 5, 0, width, height],
        ],
        dtype=torch.float32,
    )
    boxes = torch.cat([boxes, corners])
    labels = torch.randint(0, num_classes, (boxes.shape[0],), generator=gen)
    return boxes, labels


# ---------------------------------------------------------------------------- vectorized == loop

CONFIGS = [
    # (num_classes, output_stride, (H, W), max_objects, min_overlap)
    (3, 4, (96, 160), 128, 0.7),
    (1, 4, (64, 64), 128, 0.7),  # one class: every overlap is a same-class overlap
    (80, 4, (512, 512), 128, 0.7),
    (5, 8, (128, 96), 32, 0.7),  # max_objects 32: some seeds overflow
    (2, 2, (48, 80), 128, 0.3),
    (4, 1, (40, 24), 128, 0.9),
]


@pytest.mark.parametrize("layout", ["shared", "ragged"])
@pytest.mark.parametrize("config", CONFIGS, ids=[f"C{c[0]}-s{c[1]}-{c[2][0]}x{c[2][1]}" for c in CONFIGS])
@pytest.mark.parametrize("seed", range(6))
def test_vectorized_matches_reference_loop(
    config: tuple, seed: int, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    draw = functools.partial(centernet_targets._draw_gaussians, layout=layout)
    monkeypatch.setattr(centernet_targets, "_draw_gaussians", draw)
    num_classes, stride, size, max_objects, min_overlap = config
    encoder = CenterNetTargetEncoder(num_classes, stride, size, max_objects, min_overlap)
    gen = torch.Generator().manual_seed(seed)
    boxes, labels = _random_case(gen, int(torch.randint(1, 60, (1,), generator=gen)), *size, num_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow only with max_objects=32
        actual = encoder(boxes, labels)
    expected = _reference(encoder, boxes, labels)
    _assert_same(actual, expected)
    assert expected["mask"].sum() > 0 and expected["heatmap"].max() == 1.0  # not a vacuous case


def test_vectorized_matches_reference_on_crowded_same_class_objects() -> None:
    """Many overlapping objects of one class, including huge ones: the per-class max-merge."""
    encoder = CenterNetTargetEncoder(2, 4, (96, 160), max_objects=200)
    gen = torch.Generator().manual_seed(123)
    centre = torch.tensor([80.0, 48.0]) + torch.randn(150, 2, generator=gen) * 10
    wh = torch.rand(150, 2, generator=gen) * 120 + 2
    boxes = torch.cat([centre - wh / 2, centre + wh / 2], dim=1)
    labels = (torch.rand(150, generator=gen) < 0.2).long()
    actual = encoder(boxes, labels)
    _assert_same(actual, _reference(encoder, boxes, labels))
    assert actual["mask"].sum() == 150


def test_layout_choice_follows_the_radii(monkeypatch: pytest.MonkeyPatch) -> None:
    """One huge object among tiny ones: exact (ragged) windows; alike radii: one shared window."""
    calls: list[str] = []
    for name in ("_shared_windows", "_ragged_windows"):
        original = getattr(centernet_targets, name)

        def spy(*args: torch.Tensor, _name: str = name, _original=original) -> tuple:
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(centernet_targets, name, spy)
    encoder = CenterNetTargetEncoder(2, 4, (256, 256))
    tiny = torch.stack([torch.tensor([8.0 * i, 8.0 * i, 8.0 * i + 6, 8.0 * i + 6]) for i in range(30)])
    huge = _boxes((0, 0, 256, 256))
    labels = torch.zeros(31, dtype=torch.int64)
    mixed = encoder(torch.cat([tiny, huge]), labels)
    assert calls == ["_ragged_windows"]
    alike = encoder(tiny, labels[:30])
    assert calls == ["_ragged_windows", "_shared_windows"]
    _assert_same(mixed, _reference(encoder, torch.cat([tiny, huge]), labels))
    _assert_same(alike, _reference(encoder, tiny, labels[:30]))
    with pytest.raises(ValueError, match="unknown layout"):
        centernet_targets._draw_gaussians(1, 4, 4, *torch.zeros(4, 1, dtype=torch.int64), layout="grid")


def test_empty_input() -> None:
    encoder = CenterNetTargetEncoder(3, 4, (32, 48), max_objects=5)
    out = encoder(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert out["heatmap"].shape == (3, 8, 12) and out["heatmap"].dtype == torch.float32
    assert out["size"].shape == (5, 2) and out["offset"].shape == (5, 2)
    assert out["index"].shape == (5,) and out["index"].dtype == torch.int64
    assert out["mask"].shape == (5,) and out["mask"].dtype == torch.float32
    assert all(torch.count_nonzero(t) == 0 for t in out.values())
    _assert_same(out, _reference(encoder, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)))


# ----------------------------------------------------------------------------- hand-checked cases


@pytest.mark.parametrize(
    ("height", "width", "min_overlap", "expected"),
    [
        # r3 (a3 = 4*o, b3 = -2*o*(h+w), c3 = (o-1)*w*h), divided by 2 (the reference quirk), is the min.
        (10, 10, 0.7, (-28 + math.sqrt(28**2 + 4 * 2.8 * 30)) / 2),  # sqrt(1120): 2.7332
        (4, 6, 0.5, (-10 + math.sqrt(100 + 4 * 2 * 12)) / 2),  # sqrt(196) = 14: exactly 2.0
        (1, 1, 0.7, (-2.8 + math.sqrt(2.8**2 + 4 * 2.8 * 0.3)) / 2),  # 0.2733: radius 0
        (2, 30, 0.7, (-44.8 + math.sqrt(44.8**2 + 4 * 2.8 * 18)) / 2),  # elongated: 1.0983
    ],
)
def test_gaussian_radius_by_hand(height: int, width: int, min_overlap: float, expected: float) -> None:
    assert gaussian_radius_reference((height, width), min_overlap) == pytest.approx(expected, abs=1e-12)
    actual = gaussian_radius(
        torch.tensor([float(height)], dtype=torch.float64),
        torch.tensor([float(width)], dtype=torch.float64),
        min_overlap,
    )
    assert actual.item() == pytest.approx(expected, abs=1e-12)


def test_gaussian_radius_hand_values_sanity() -> None:
    assert (-10 + math.sqrt(196)) / 2 == 2.0
    # r1 and r2 are far larger than r3 here (they are ~h+w): the min really is r3.
    r1 = (20 + math.sqrt(20**2 - 4 * 100 * 0.3 / 1.7)) / 2
    r2 = (40 + math.sqrt(40**2 - 16 * 0.3 * 100)) / 2
    assert r1 > 19 and r2 > 36 and gaussian_radius_reference((10, 10), 0.7) < 2.8


@pytest.mark.parametrize("min_overlap", [0.05, 0.3, 0.7, 0.9, 0.99])
def test_numpy_radius_twin_matches_reference_on_integer_sizes(min_overlap: float) -> None:
    """The encoder's numpy radius (stacked roots) gives the reference's int radius for all sizes."""
    sizes = torch.arange(1, 161, dtype=torch.float64)
    height, width = (t.reshape(-1) for t in torch.meshgrid(sizes, sizes, indexing="ij"))
    twin = centernet_targets._gaussian_radius_np(height.numpy(), width.numpy(), min_overlap)
    expected = [
        gaussian_radius_reference((int(h), int(w)), min_overlap)
        for h, w in zip(height.tolist(), width.tolist(), strict=True)
    ]
    expected_t = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(torch.from_numpy(twin), expected_t, atol=1e-9, rtol=0)
    torch.testing.assert_close(gaussian_radius(height, width, min_overlap), expected_t, atol=1e-9, rtol=0)
    assert torch.equal(torch.from_numpy(twin).long(), expected_t.long())  # int(): what the encoder uses


def test_single_box_hand_checked() -> None:
    """Centre at (5.25, 3.75) cells, w x h = 10 x 6 cells: peak at cell (x=5, y=3), radius 2."""
    stride, (height, width) = 4, (64, 96)
    encoder = CenterNetTargetEncoder(3, stride, (height, width), max_objects=4)
    w_out = width // stride
    cx, cy, w, h = 5.25, 3.75, 10.0, 6.0
    box = _boxes(((cx - w / 2) * stride, (cy - h / 2) * stride, (cx + w / 2) * stride, (cy + h / 2) * stride))
    out = encoder(box, torch.tensor([1]))

    assert out["heatmap"][1, 3, 5].item() == 1.0
    assert torch.allclose(out["offset"][0], torch.tensor([0.25, 0.75]))
    assert torch.allclose(out["size"][0], torch.tensor([10.0, 6.0]))
    assert out["index"][0].item() == 3 * w_out + 5
    assert out["mask"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert torch.count_nonzero(out["size"][1:]) == 0 and torch.count_nonzero(out["index"][1:]) == 0

    # radius = int((-22.4 + sqrt(22.4**2 + 4 * 2.8 * 18)) / 2) = int(2.06) = 2; sigma = 5 / 6.
    sigma = 5 / 6
    expected = torch.zeros(3, 16, 24)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            expected[1, 3 + dy, 5 + dx] = math.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
    torch.testing.assert_close(out["heatmap"], expected, atol=1e-6, rtol=0)
    assert torch.count_nonzero(out["heatmap"]) == 25


def test_two_overlapping_same_class_objects_take_the_max() -> None:
    encoder = CenterNetTargetEncoder(2, 4, (64, 64))
    a, b = _boxes((8, 8, 40, 36)), _boxes((16, 12, 52, 44))
    label = torch.tensor([0])
    heat_a, heat_b = encoder(a, label)["heatmap"], encoder(b, label)["heatmap"]
    both = encoder(torch.cat([a, b]), torch.tensor([0, 0]))
    overlap = (heat_a > 0) & (heat_b > 0)
    assert overlap.sum() >= 5  # the gaussians really overlap: max differs from sum there
    assert torch.equal(both["heatmap"], torch.maximum(heat_a, heat_b))
    assert not torch.allclose(both["heatmap"], heat_a + heat_b)
    assert both["mask"][:2].tolist() == [1.0, 1.0]


def test_different_classes_land_in_their_channels() -> None:
    encoder = CenterNetTargetEncoder(3, 4, (64, 64))
    a, b = _boxes((8, 8, 40, 36)), _boxes((16, 12, 52, 44))
    both = encoder(torch.cat([a, b]), torch.tensor([0, 2]))["heatmap"]
    assert torch.equal(both[0], encoder(a, torch.tensor([0]))["heatmap"][0])
    assert torch.equal(both[2], encoder(b, torch.tensor([2]))["heatmap"][2])
    assert torch.count_nonzero(both[1]) == 0
    assert both[0].max() == 1.0 and both[2].max() == 1.0


def test_corner_object_gaussian_is_clipped() -> None:
    """A box in the top-left corner: only the quadrant of its gaussian inside the map is drawn."""
    encoder = CenterNetTargetEncoder(1, 4, (64, 64))
    out = encoder(_boxes((0, 0, 6, 6)), torch.tensor([0]))  # 1.5 x 1.5 cells, centre (0.75, 0.75)
    assert out["index"][0].item() == 0
    assert torch.allclose(out["offset"][0], torch.tensor([0.75, 0.75]))
    # radius of a 2 x 2 (ceil) box: int((-5.6 + sqrt(5.6**2 + 4 * 2.8 * 1.2)) / 2) = int(0.55) = 0.
    assert torch.count_nonzero(out["heatmap"]) == 1 and out["heatmap"][0, 0, 0] == 1.0

    big = encoder(_boxes((-40, -40, 40, 40)), torch.tensor([0]))  # clipped to 0..10 cells
    assert torch.allclose(big["size"][0], torch.tensor([10.0, 10.0]))
    assert torch.allclose(big["offset"][0], torch.tensor([0.0, 0.0]))
    assert big["index"][0].item() == 5 * 16 + 5  # centre (5, 5) after clipping, not (0, 0)

    # radius int(r(10, 10)) = int((-28 + sqrt(1120)) / 2) = int(2.73) = 2, sigma = 5 / 6.
    corner = encoder(_boxes((0, 0, 40, 40)), torch.tensor([0]))  # centre (5, 5)
    sigma = 5 / 6
    window = torch.tensor(
        [[math.exp(-(x * x + y * y) / (2 * sigma * sigma)) for x in range(-2, 3)] for y in range(-2, 3)]
    )
    torch.testing.assert_close(corner["heatmap"][0, 3:8, 3:8], window, atol=1e-6, rtol=0)
    assert torch.count_nonzero(corner["heatmap"]) == 25
    # Clipped to 0..5 cells: centre (2.5, 2.5), radius int((-14 + sqrt(280)) / 2) = int(1.37) = 1.
    shifted = encoder(_boxes((-20, -20, 20, 20)), torch.tensor([0]))
    assert shifted["index"][0].item() == 2 * 16 + 2
    assert torch.count_nonzero(shifted["heatmap"]) == 9


def test_bottom_right_border_object_keeps_full_size() -> None:
    """x2 = W_in, y2 = H_in: the box keeps its full size (clipped to W_out, not W_out - 1)."""
    encoder = CenterNetTargetEncoder(1, 4, (64, 96))
    out = encoder(_boxes((56, 24, 96, 64)), torch.tensor([0]))  # cells x 14..24, y 6..16
    assert torch.allclose(out["size"][0], torch.tensor([10.0, 10.0]))
    assert out["index"][0].item() == 11 * 24 + 19
    assert out["heatmap"][0, 11, 19] == 1.0
    # radius int(r(10, 10)) = 2: rows 9..13 and columns 17..21.
    assert torch.count_nonzero(out["heatmap"][0, 9:14, 17:22]) == 25
    assert torch.count_nonzero(out["heatmap"]) == 25


@pytest.mark.parametrize(
    ("box", "peak", "rows", "cols"),
    [
        # Flat boxes 20 x 1.5 cells: radius int(r(2, 20)) = int(1.06) = 1, but the peak sits on
        # the first (last) row, so one row of the 3 x 3 window falls outside the 16 x 24 map.
        ((8, 0, 88, 6), (0, 12), (0, 1), (11, 13)),  # top edge: centre (12, 0.75)
        ((16, 58, 96, 64), (15, 14), (14, 15), (13, 15)),  # bottom-right: centre (14, 15.25)
        ((90, 0, 96, 64), (8, 23), (7, 9), (22, 23)),  # right edge, tall: centre (23.25, 8)
    ],
)
def test_border_gaussian_is_clipped(
    box: tuple[float, ...], peak: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]
) -> None:
    encoder = CenterNetTargetEncoder(1, 4, (64, 96))
    heat = encoder(_boxes(box), torch.tensor([0]))["heatmap"][0]
    py, px = peak
    sigma = 3 / 6  # radius 1
    expected = torch.zeros(16, 24)
    for y in range(rows[0], rows[1] + 1):
        for x in range(cols[0], cols[1] + 1):
            expected[y, x] = math.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma * sigma))
    torch.testing.assert_close(heat, expected, atol=1e-6, rtol=0)
    assert torch.count_nonzero(heat) == 6  # 2 x 3 of the 3 x 3 window: no wrap-around
    assert heat[py, px] == 1.0


def test_overflow_warns_keeps_first_and_counts() -> None:
    encoder = CenterNetTargetEncoder(2, 4, (64, 64), max_objects=3)
    boxes = torch.stack([torch.tensor([4.0 * i, 0.0, 4.0 * i + 8 + i, 12.0]) for i in range(5)])
    labels = torch.tensor([0, 1, 0, 1, 0])
    with pytest.warns(RuntimeWarning, match=r"5 objects exceed max_objects=3; dropped the last 2"):
        out = encoder(boxes, labels)
    assert encoder.overflow_count == 2
    assert out["mask"].tolist() == [1.0, 1.0, 1.0]
    assert out["size"][:, 0].tolist() == pytest.approx([2.0, 2.25, 2.5])
    _assert_same(out, encoder(boxes[:3], labels[:3]))  # the dropped two leave no trace
    with pytest.warns(RuntimeWarning, match="dropped the last 1"):
        encoder(boxes[:4], labels[:4])
    assert encoder.overflow_count == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder(boxes[:3], labels[:3])  # at the cap: no warning
    assert encoder.overflow_count == 3
    _assert_same(out, _reference(encoder, boxes, labels))


def test_degenerate_boxes_get_no_target() -> None:
    encoder = CenterNetTargetEncoder(2, 4, (64, 64), max_objects=4)
    degenerate = _boxes(
        (10, 10, 10, 30),  # zero width
        (10, 10, 30, 10),  # zero height
        (30, 30, 10, 10),  # inverted
        (70, 10, 90, 30),  # right of the image
        (-30, -30, -1, 40),  # left of the image
        (10, 64, 30, 80),  # starts at the bottom edge
    )
    out = encoder(degenerate, torch.tensor([0, 1, 0, 1, 0, 1]))
    assert all(torch.count_nonzero(t) == 0 for t in out.values())
    # A valid box after degenerate ones takes slot 0.
    mixed = encoder(torch.cat([degenerate, _boxes((8, 8, 24, 24))]), torch.tensor([0, 1, 0, 1, 0, 1, 1]))
    assert mixed["mask"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert mixed["index"][0].item() == 4 * 16 + 4
    assert torch.count_nonzero(mixed["heatmap"][0]) == 0 and mixed["heatmap"][1, 4, 4] == 1.0


def test_inputs_are_validated() -> None:
    encoder = CenterNetTargetEncoder(2, 4, (64, 64))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        encoder(_boxes((0, 0, 8, 8)), torch.tensor([2]))
    with pytest.raises(ValueError, match="1 boxes but 2 labels"):
        encoder(_boxes((0, 0, 8, 8)), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="multiples of the output stride 4"):
        CenterNetTargetEncoder(2, 4, (62, 64))
    with pytest.raises(ValueError, match="min_overlap"):
        CenterNetTargetEncoder(2, 4, (64, 64), min_overlap=1.0)


def test_accepts_bounding_boxes_and_pickles() -> None:
    encoder = CenterNetTargetEncoder(3, 4, (96, 160), max_objects=16)
    gen = torch.Generator().manual_seed(7)
    boxes, labels = _random_case(gen, 10, 96, 160, 3)
    wrapped = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(96, 160))
    out = encoder(wrapped, labels)
    assert all(type(t) is torch.Tensor for t in out.values())
    clone = pickle.loads(pickle.dumps(encoder))
    assert repr(clone) == repr(encoder)
    _assert_same(clone(boxes, labels), out)


# ------------------------------------------------------------------------------- decode round trip


def test_decode_inverts_encode_for_separated_objects() -> None:
    head = CenterNetHead(8, 32, 3, max_detections=20)
    height, width = 96, 160
    encoder = head.target_encoder((height, width))
    boxes = _boxes(
        (3.3, 5.1, 27.9, 30.7),
        (61.2, 10.4, 101.6, 47.3),
        (118.0, 52.5, 160.0, 96.0),  # touches the right and bottom borders
        (0.0, 60.2, 21.7, 91.9),  # touches the left border
        (70.1, 70.2, 75.9, 77.3),  # tiny
    )
    labels = torch.tensor([2, 0, 1, 2, 0])
    target = encoder(boxes, labels)
    assert target["mask"].sum() == 5

    h_out, w_out = height // encoder.output_stride, width // encoder.output_stride
    real = target["mask"] > 0
    index = target["index"][real]
    size = torch.zeros(2, h_out * w_out)
    offset = torch.zeros(2, h_out * w_out)
    size[:, index] = target["size"][real].T
    offset[:, index] = target["offset"][real].T
    prediction = {
        "heatmap": torch.logit(target["heatmap"], eps=1e-6)[None],
        "size": size.reshape(1, 2, h_out, w_out),
        "offset": offset.reshape(1, 2, h_out, w_out),
    }
    det = head.decode(prediction)
    found = det["scores"][0] > 0.5
    assert found.sum() == 5
    got_boxes, got_labels = det["boxes"][0][found], det["labels"][0][found]
    order = torch.argsort(got_boxes[:, 0] * 1000 + got_boxes[:, 1])
    want = torch.argsort(boxes[:, 0] * 1000 + boxes[:, 1])
    torch.testing.assert_close(got_boxes[order], boxes[want], atol=1e-3, rtol=0)
    assert torch.equal(got_labels[order], labels[want])
