"""Augmentation plugins: boxes follow the pixels, letterbox inverts, flags and params validate.

Geometric checks draw solid coloured rectangles on a plain background, augment, sanitize, and
compare each kept box with the bounding box of its colour's pixels in the output image.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torchvision import tv_tensors
from torchvision.transforms import v2

from toolkit.data.letterbox import Letterbox, unletterbox_boxes
from toolkit.plugins import PluginManager
from toolkit_plugins.augmentations import geometric, photometric

MODULES = ["toolkit_plugins.augmentations.geometric", "toolkit_plugins.augmentations.photometric"]
BACKGROUND = (40, 40, 40)
RED, GREEN = (230, 20, 20), (20, 230, 20)
# label -> (colour, XYXY box in a 120 x 160 image)
OBJECTS = {1: (RED, (20, 30, 70, 80)), 2: (GREEN, (100, 50, 140, 100))}
SEEDS = range(10)
TOL = 2.0


@pytest.fixture(scope="module")
def registry() -> Any:
    return PluginManager(modules=MODULES, use_entry_points=False).registry("augmentation")


def scene(
    height: int = 120, width: int = 160, objects: dict[int, tuple] = OBJECTS
) -> tuple[tv_tensors.Image, dict[str, Any]]:
    """A uint8 image with filled rectangles and the matching detection target."""
    image = torch.empty(3, height, width, dtype=torch.uint8)
    image[:] = torch.tensor(BACKGROUND, dtype=torch.uint8)[:, None, None]
    for colour, (x1, y1, x2, y2) in objects.values():
        image[:, y1:y2, x1:x2] = torch.tensor(colour, dtype=torch.uint8)[:, None, None]
    boxes = [box for _, box in objects.values()]
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(boxes, dtype=torch.float32), format="XYXY", canvas_size=(height, width)
        ),
        "labels": torch.tensor(list(objects), dtype=torch.int64),
        "image_id": 7,
        "note": "passes through",
    }
    return tv_tensors.Image(image), target


def colour_mask(image: torch.Tensor, label: int) -> torch.Tensor:
    """Pixels at least half-way to the object's colour (red for label 1, green for label 2)."""
    r, g, _ = image.to(torch.int32)
    return (r > 135) & (g < 125) if label == 1 else (g > 135) & (r < 125)


def pixel_box(mask: torch.Tensor) -> torch.Tensor | None:
    """XYXY box (pixel edges) of the True pixels, or None."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if ys.numel() == 0:
        return None
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def sanitized(image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Apply the builder's SanitizeBoundingBoxes and check that boxes and labels stay aligned."""
    assert target["image_id"] == 7 and target["note"] == "passes through"
    assert target["boxes"].shape[0] == target["labels"].shape[0]
    image, target = v2.SanitizeBoundingBoxes()(image, target)
    boxes, labels = target["boxes"], target["labels"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes)
    assert tuple(boxes.canvas_size) == tuple(image.shape[-2:])
    assert boxes.shape[0] == labels.shape[0]
    assert len(set(labels.tolist())) == labels.numel() and set(labels.tolist()) <= set(OBJECTS)
    return image, target


def check_boxes_follow_pixels(
    image: torch.Tensor, target: dict[str, Any], *, centre_rule: bool = False
) -> int:
    """Sanitize, then check every kept box against the pixels of its colour (axis-aligned objects).

    A dropped object may only leave a sliver (< 3 px) behind, or, with `centre_rule` (IoU crop drops
    boxes whose centre leaves the crop), at most half of the object along one axis.
    Returns how many boxes were compared with pixels.
    """
    image, target = sanitized(image, target)
    boxes, labels = target["boxes"], target["labels"]
    checked = 0
    for label, (_, (x1, y1, x2, y2)) in OBJECTS.items():
        pixels = pixel_box(colour_mask(image, label))
        if label in labels.tolist():
            box = boxes[labels == label][0].as_subclass(torch.Tensor)
            if min(box[2] - box[0], box[3] - box[1]) < 3:
                continue  # a sliver: antialiasing may leave no pixel past the colour threshold
            assert pixels is not None, f"label {label}: box {box.tolist()} but no pixels"
            assert torch.allclose(box, pixels, atol=TOL), f"label {label}: {box} vs {pixels}"
            checked += 1
        elif pixels is not None:
            width, height = float(pixels[2] - pixels[0]), float(pixels[3] - pixels[1])
            if centre_rule:
                assert width <= (x2 - x1) / 2 + 1 or height <= (y2 - y1) / 2 + 1
            else:
                assert min(width, height) < 3, f"label {label} dropped but {pixels.tolist()} visible"
    return checked


def run_seeds(transform: v2.Transform, **check: Any) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    outputs = []
    checked = 0
    for seed in SEEDS:
        torch.manual_seed(seed)
        image, target = transform(*scene())
        checked += check_boxes_follow_pixels(image, target, **check)
        outputs.append((image, target))
    assert checked >= len(SEEDS), f"only {checked} boxes compared with pixels over {len(SEEDS)} seeds"
    return outputs


# -- geometric ---------------------------------------------------------------------------------
def test_hflip_mirrors_boxes_with_pixels() -> None:
    for image, target in run_seeds(geometric.hflip(p=1.0)):
        expected = torch.tensor([[160 - x2, y1, 160 - x1, y2] for _, (x1, y1, x2, y2) in OBJECTS.values()])
        assert torch.equal(target["boxes"].as_subclass(torch.Tensor), expected.float())
        assert image.shape == (3, 120, 160)


def test_vflip_mirrors_boxes_with_pixels() -> None:
    for image, target in run_seeds(geometric.vflip(p=1.0)):
        expected = torch.tensor([[x1, 120 - y2, x2, 120 - y1] for _, (x1, y1, x2, y2) in OBJECTS.values()])
        assert torch.equal(target["boxes"].as_subclass(torch.Tensor), expected.float())
        assert image.shape == (3, 120, 160)


def test_rot90_turns_pixels_and_boxes_exactly() -> None:
    """Every turn of a 120 x 160 scene matches torch.rot90 pixel for pixel, and its boxes the
    colours' pixel boxes; the three turns are drawn evenly and p = 0 leaves the sample alone."""
    expected_boxes = {  # counter-clockwise turns: (x, y) -> (y, W - x), (W - x, H - y), (H - y, x)
        1: lambda x1, y1, x2, y2: [y1, 160 - x2, y2, 160 - x1],
        2: lambda x1, y1, x2, y2: [160 - x2, 120 - y2, 160 - x1, 120 - y1],
        3: lambda x1, y1, x2, y2: [120 - y2, x1, 120 - y1, x2],
    }
    source, _ = scene()
    seen = set()
    for image, target in run_seeds(geometric.rot90(p=1.0)):
        turns = next(k for k in (1, 2, 3) if torch.equal(image, torch.rot90(source, k, dims=(-2, -1))))
        seen.add(turns)
        expected = torch.tensor([expected_boxes[turns](*box) for _, box in OBJECTS.values()])
        assert torch.equal(target["boxes"].as_subclass(torch.Tensor), expected.float())
        assert tuple(target["boxes"].canvas_size) == tuple(image.shape[1:])
    assert seen == {1, 2, 3}
    image, target = geometric.rot90(p=0.0)(*scene())
    assert torch.equal(image, source)


def test_affine_box_is_clamped_envelope_of_rotated_corners() -> None:
    transform = geometric.affine(
        degrees=(25.0, 25.0), translate=(0.15, 0.15), scale=(1.1, 1.1), shear=(10.0, 10.0), p=1.0
    )
    fully_inside = 0
    for seed in SEEDS:
        image, target = scene()
        corners = [[x, y] for _, (x1, y1, x2, y2) in OBJECTS.values() for x in (x1, x2) for y in (y1, y2)]
        target["corners"] = tv_tensors.KeyPoints(
            torch.tensor(corners, dtype=torch.float32), canvas_size=(120, 160)
        )
        torch.manual_seed(seed)
        out_image, out = transform(image, target)
        corners_out = out.pop("corners").as_subclass(torch.Tensor).reshape(len(OBJECTS), 4, 2)
        boxes = out["boxes"].as_subclass(torch.Tensor)
        # Exact: the box is the envelope of the transformed corners (clamping commutes with min/max).
        envelope = torch.cat([corners_out.amin(dim=1), corners_out.amax(dim=1)], dim=1)
        envelope = torch.min(envelope.clamp(min=0), torch.tensor([160.0, 120.0, 160.0, 120.0]))
        assert torch.allclose(boxes, envelope, atol=1e-3), (boxes, envelope)
        for index, label in enumerate(OBJECTS):
            box = boxes[index]
            pixels = pixel_box(colour_mask(out_image, label))
            if pixels is None:
                continue
            # Every coloured pixel lies inside the box (+-2 px) ...
            assert (pixels[:2] >= box[:2] - TOL).all() and (pixels[2:] <= box[2:] + TOL).all()
            # ... and for an object fully in view the box is tight: corners are extreme pixels.
            if (box[0] > 0) and (box[1] > 0) and (box[2] < 160) and (box[3] < 120):
                fully_inside += 1
                assert torch.allclose(box, pixels, atol=TOL), (box, pixels)
                x1, x2 = OBJECTS[label][1][0::2]
                assert box[2] - box[0] > 1.2 * 1.1 * (x2 - x1)  # rotated: envelope wider than the box
        sanitized(out_image, out)
    assert fully_inside >= len(SEEDS) // 2


def test_random_resized_crop_outputs_input_size() -> None:
    transform = geometric.random_resized_crop(scale=(0.2, 1.0), input_size=(64, 96))
    for image, _ in run_seeds(transform):
        assert image.shape == (3, 64, 96)
    assert geometric.random_resized_crop(size=(32, 32), input_size=(64, 96))(*scene())[0].shape == (3, 32, 32)


def test_iou_crop_drops_boxes_with_their_labels() -> None:
    transform = geometric.iou_crop(sampler_options=(0.0, 0.3, 1.0), p=1.0)
    shapes = {tuple(image.shape) for image, _ in run_seeds(transform, centre_rule=True)}
    assert len(shapes) > 1 and all(h <= 120 and w <= 160 for _, h, w in shapes)


def test_zoom_out_shifts_boxes_onto_larger_canvas() -> None:
    transform = geometric.zoom_out(side_range=(1.5, 3.0), fill=0.0, p=1.0)
    for image, target in run_seeds(transform):
        assert image.shape[1] >= 180 and image.shape[2] >= 240
        assert len(target["boxes"]) == len(OBJECTS)
        sizes = target["boxes"][:, 2:] - target["boxes"][:, :2]
        assert torch.allclose(sizes, torch.tensor([[50.0, 50.0], [40.0, 50.0]]))


def test_scale_jitter_fits_target_size_height_width() -> None:
    for image, _ in run_seeds(geometric.scale_jitter(scale_range=(0.5, 1.5), input_size=(64, 128))):
        assert image.shape[1] * 160 == pytest.approx(image.shape[2] * 120, abs=160)  # aspect kept
    image, _ = geometric.scale_jitter(scale_range=(1.0, 1.0), input_size=(64, 128))(*scene())
    assert tuple(image.shape[1:]) == (64, 85)  # fits (H, W) = (64, 128): height limits
    image, _ = geometric.scale_jitter(target_size=(200, 80), scale_range=(1.0, 1.0))(*scene())
    assert tuple(image.shape[1:]) == (60, 80)  # width limits


BORDER_CASES = {
    "hflip": lambda: geometric.hflip(p=1.0),
    "vflip": lambda: geometric.vflip(p=1.0),
    "rot90": lambda: geometric.rot90(p=1.0),
    "affine": lambda: geometric.affine(degrees=(0.0, 0.0), translate=(0.0, 0.0), scale=(1.0, 1.0)),
    "random_resized_crop": lambda: geometric.random_resized_crop(input_size=(61, 97)),
    "iou_crop": lambda: geometric.iou_crop(),
    "zoom_out": lambda: geometric.zoom_out(p=1.0),
    "scale_jitter": lambda: geometric.scale_jitter(input_size=(61, 97)),
    "resize": lambda: geometric.resize(input_size=(61, 97)),
}


@pytest.mark.parametrize("name", sorted(BORDER_CASES))
def test_box_touching_the_border_survives_sanitize(name: str) -> None:
    """A full-image box must never come out a hair outside the canvas (sanitize would drop it)."""
    transform = BORDER_CASES[name]()
    for seed in range(8):
        image, target = scene()
        target["boxes"] = tv_tensors.BoundingBoxes(
            [[0.0, 0.0, 160.0, 120.0]], format="XYXY", canvas_size=(120, 160)
        )
        target["labels"] = torch.tensor([1])
        torch.manual_seed(seed)
        image, target = sanitized(*transform(image, target))
        assert target["labels"].tolist() == [1], f"seed {seed}: full-image box dropped"


WIDE = (100, 333, {1: (RED, (20, 10, 120, 60)), 2: (GREEN, (200, 30, 300, 90))})
TALL = (333, 100, {1: (RED, (10, 20, 60, 120)), 2: (GREEN, (30, 200, 90, 300))})


@pytest.mark.parametrize("shape", [WIDE, TALL], ids=["wide", "tall"])
@pytest.mark.parametrize("input_size", [(64, 96), (96, 64), (80, 80)])
def test_letterbox_size_aspect_centring_and_inverse(shape: tuple, input_size: tuple[int, int]) -> None:
    height, width, objects = shape
    image, target = scene(height, width, objects)
    transform = geometric.resize(fill=0.0, input_size=input_size)
    out_image, out = transform(image, target)
    assert tuple(out_image.shape) == (3, *input_size)
    scale, left, top = out["letterbox"].tolist()
    assert out["letterbox"].dtype == torch.float32
    assert scale == pytest.approx(min(input_size[0] / height, input_size[1] / width), rel=1e-6)
    content = pixel_box((out_image.to(torch.int32) > 20).any(dim=0))
    assert content is not None
    new_w, new_h = float(content[2] - content[0]), float(content[3] - content[1])
    assert abs(new_w - width * scale) <= 0.5 + 1e-4 and abs(new_h - height * scale) <= 0.5 + 1e-4
    assert new_w == input_size[1] or new_h == input_size[0]  # the limiting side is filled
    assert (content[0], content[1]) == (left, top)
    assert abs(left - (input_size[1] - content[2])) <= 1 and abs(top - (input_size[0] - content[3])) <= 1
    for label, (_, _) in objects.items():
        box = out["boxes"][out["labels"] == label][0].as_subclass(torch.Tensor)
        pixels = pixel_box(colour_mask(out_image, label))
        assert pixels is not None and torch.allclose(box, pixels, atol=TOL)
    restored = unletterbox_boxes(out["boxes"], out["letterbox"])
    assert torch.allclose(restored, target["boxes"].as_subclass(torch.Tensor), atol=1e-4)
    assert out["image_id"] == 7 and torch.equal(out["labels"], target["labels"])
    assert "letterbox" not in target  # the input target is not modified


def test_unletterbox_batch_and_fill() -> None:
    samples = [scene(h, w, objects) for h, w, objects in (WIDE, TALL)]
    transform = geometric.resize(fill=114.0, input_size=(64, 96))
    outputs = [transform(image, target) for image, target in samples]
    boxes = torch.stack([out["boxes"].as_subclass(torch.Tensor) for _, out in outputs])  # [2, 2, 4]
    letterbox = torch.stack([out["letterbox"] for _, out in outputs])  # [2, 3]
    restored = unletterbox_boxes(boxes, letterbox)
    expected = torch.stack([target["boxes"].as_subclass(torch.Tensor) for _, target in samples])
    assert restored.shape == (2, 2, 4) and torch.allclose(restored, expected, atol=1e-4)
    wide_image, wide = outputs[0]
    top = int(wide["letterbox"][2])
    assert top > 0 and (wide_image[:, :top] == 114).all()
    with pytest.raises(ValueError, match="letterbox"):
        unletterbox_boxes(boxes, letterbox[0])


def test_letterbox_classification_target_and_composition() -> None:
    image, _ = scene(100, 333, WIDE[2])
    _, out = Letterbox((64, 64))(image, {"label": torch.tensor(3)})
    assert out["label"].item() == 3 and out["letterbox"].shape == (3,)
    _, detection = scene(100, 333, WIDE[2])
    once = Letterbox((64, 64))(image, detection)
    twice = Letterbox((128, 96))(*once)
    restored = unletterbox_boxes(twice[1]["boxes"], twice[1]["letterbox"])
    assert torch.allclose(restored, detection["boxes"].as_subclass(torch.Tensor), atol=1e-3)


def test_output_size_required() -> None:
    with pytest.raises(ValueError, match="resize"):
        geometric.resize()
    with pytest.raises(ValueError, match="random_resized_crop"):
        geometric.random_resized_crop()


# -- photometric -------------------------------------------------------------------------------
def _boxes_unchanged(transform: v2.Transform, image: torch.Tensor | None = None) -> list[torch.Tensor]:
    images = []
    for seed in range(4):
        original, target = scene()
        original = original if image is None else image
        torch.manual_seed(seed)
        out_image, out = transform(original, target)
        assert torch.equal(out["boxes"], target["boxes"]) and torch.equal(out["labels"], target["labels"])
        assert out["image_id"] == 7 and out["note"] == "passes through"
        assert out_image.shape == original.shape
        images.append(out_image)
    return images


def test_color_jitter_changes_pixels_not_boxes() -> None:
    transform = photometric.color_jitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.1, p=1.0)
    original = scene()[0]
    assert all(not torch.equal(image, original) for image in _boxes_unchanged(transform))


def test_erasing_keeps_the_box_of_an_erased_object() -> None:
    # A 117 x 156 rectangle (95 % of the area, height / width 0.75) covers both objects wherever it lands.
    transform = photometric.erasing(p=1.0, scale=(0.95, 0.95), ratio=(0.75, 0.75), value=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "passing through" warning from v2
        images = _boxes_unchanged(transform)
    for image in images:
        assert int((image == 0).all(dim=0).sum()) == 117 * 156
        assert pixel_box(colour_mask(image, 1)) is None and pixel_box(colour_mask(image, 2)) is None


def test_gaussian_noise_output_clipped() -> None:
    image = v2.ToDtype(torch.float32, scale=True)(scene()[0])
    for out in _boxes_unchanged(photometric.gaussian_noise(sigma=0.5, p=1.0), image):
        assert out.min() >= 0.0 and out.max() <= 1.0 and not torch.equal(out, image)
    unclipped = _boxes_unchanged(photometric.gaussian_noise(sigma=0.5, clip=False, p=1.0), image)
    assert unclipped[0].min() < 0.0 and unclipped[0].max() > 1.0


# -- registration, flags, params ---------------------------------------------------------------
FLAGS = {  # name -> needs_float
    "hflip": False,
    "vflip": False,
    "rot90": False,
    "affine": False,
    "random_resized_crop": False,
    "random_crop": False,
    "iou_crop": False,
    "zoom_out": False,
    "scale_jitter": False,
    "resize": False,
    "color_jitter": False,
    "erasing": False,
    "gaussian_noise": True,
}


def test_registered_components_and_flags(registry: Any) -> None:
    assert registry.names() == sorted(FLAGS)
    for name, needs_float in FLAGS.items():
        entry = registry.get(name)
        assert "input_size" not in entry.params.model_fields
        for params in ({}, {"p": 0.3} if "p" in entry.params.model_fields else {}):
            transform = entry.build(params, input_size=(64, 96))
            assert isinstance(transform, v2.Transform), name
            assert transform.needs_float == needs_float, name
            copy = pickle.loads(pickle.dumps(transform))  # DataLoader workers may be spawned
            assert copy.needs_float == needs_float, name


def test_registration_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import toolkit_plugins.augmentations.geometric; "
        "import toolkit_plugins.augmentations.photometric; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("affine", {"scale": [1.2, 0.8]}, "scale"),
        ("affine", {"degrees": [10, -10]}, "degrees"),
        ("hflip", {"p": 1.5}, "p"),
        ("gaussian_noise", {"sigma": -0.1}, "sigma"),
        ("zoom_out", {"side_range": [0.5, 2.0]}, "side_range"),
        ("iou_crop", {"sampler_options": [0.3, 0.5]}, "sampler_options"),
        ("iou_crop", {"scale": [0.8, 0.3]}, "scale"),
        ("random_resized_crop", {"scale": [0.0, 1.0]}, "scale"),
        ("random_resized_crop", {"size": [0, 64]}, "size"),
        ("color_jitter", {"hue": 0.7}, "hue"),
        ("erasing", {"ratio": [3.0, 0.3]}, "ratio"),
        ("scale_jitter", {"scale_range": [2.0, 1.0]}, "scale_range"),
        ("resize", {"input_size": [64, 64]}, "input_size"),
        ("resize", {"fill": 300}, "fill"),
    ],
)
def test_invalid_params_name_the_field(registry: Any, name: str, params: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        registry.get(name).params.model_validate(params)
    assert field in {str(error["loc"][0]) for error in info.value.errors()}
    assert field in str(info.value)


def test_params_accept_yaml_lists(registry: Any) -> None:
    params = registry.get("affine").params.model_validate({"scale": [0.8, 1.2], "degrees": [-5, 5]})
    assert params.scale == (0.8, 1.2)
    transform = registry.get("affine").build(params)
    assert isinstance(transform, v2.RandomAffine)


def test_random_crop_cuts_a_window_at_the_images_scale() -> None:
    """The window's origin is read from the pixels (x in channel 0, y in channel 1): every box is the
    input box shifted by it and cut to the window; a box outside the window is left degenerate."""
    ys, xs = torch.meshgrid(torch.arange(100), torch.arange(200), indexing="ij")
    image = tv_tensors.Image(torch.stack([xs, ys, torch.zeros_like(xs)]).to(torch.uint8))
    boxes = tv_tensors.BoundingBoxes(
        [[150, 40, 190, 80], [10, 10, 30, 30], [60, 20, 100, 60]], format="XYXY", canvas_size=(100, 200)
    )
    crop = geometric.random_crop(size=(64, 64))
    for seed in range(5):
        torch.manual_seed(seed)
        out_image, out_boxes = crop(image, boxes)
        assert out_image.shape == (3, 64, 64)
        x0, y0 = int(out_image[0, 0, 0]), int(out_image[1, 0, 0])
        assert torch.equal(out_image[:, :, :], image[:, y0 : y0 + 64, x0 : x0 + 64])  # no resizing
        expected = (boxes.as_subclass(torch.Tensor) - torch.tensor([x0, y0, x0, y0])).clamp(min=0)
        expected = torch.minimum(expected, torch.tensor(64.0))
        assert torch.equal(out_boxes.as_subclass(torch.Tensor).float(), expected.float())
    padded, _ = crop(tv_tensors.Image(torch.full((3, 40, 50), 7, dtype=torch.uint8)), boxes[:1])
    assert padded.shape == (3, 64, 64) and int(padded.min()) == 0  # a smaller image is padded first
