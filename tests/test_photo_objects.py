"""The natural-photo stand-in (`photo_objects`): one class, one or two large objects per image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_cli_here

from toolkit.errors import ToolkitError
from toolkit_plugins.datasets.patterns import photo_objects
from toolkit_plugins.datasets.patterns_dataset import MIN_VISIBLE, PatternObjectsDataset, PatternRenderer


def test_images_hold_one_or_two_large_objects_of_the_one_class() -> None:
    dataset = photo_objects(length=40, image_size=128, seed=4)
    assert dataset.class_names == ["object"] and dataset.task == "detection"
    counts = []
    for index in range(len(dataset)):
        image, target = dataset[index]
        boxes = target["boxes"]
        assert image.dtype == torch.uint8 and image.shape == (3, 128, 128)
        assert target["labels"].tolist() == [0] * len(boxes) and target["image_id"] == index
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 128).all()
        sides = (boxes[:, 2:] - boxes[:, :2]).max(dim=1).values
        # an ellipse of diameter >= 0.35 of the side spans at least 0.7 of its diameter in some axis
        assert (sides >= 0.35 * 0.7 * 128).all(), sides
        counts.append(len(boxes))
    assert min(counts) >= 1 and max(counts) <= 2 and 2 in counts
    truth = dataset.ground_truth()
    assert len(truth["images"]) == 40 and len(truth["annotations"]) == sum(counts)
    assert [c["name"] for c in truth["categories"]] == ["object"]


def test_an_image_depends_only_on_seed_and_index_and_is_handed_out_as_a_copy() -> None:
    a, b = photo_objects(length=6, image_size=64, seed=9), photo_objects(length=6, image_size=64, seed=9)
    first, _ = a[5]
    assert torch.equal(first, b[5][0]) and not torch.equal(first, a[4][0])
    first.zero_()
    assert a[5][0].any(), "the kept scene is not changed by a caller writing into its copy"
    assert not torch.equal(a[5][0], photo_objects(length=6, image_size=64, seed=10)[5][0])
    with pytest.raises(IndexError):
        a[6]


def test_distractors_never_take_the_class_look_and_are_not_labelled() -> None:
    dataset = photo_objects(length=2, distractors=(3, 3))
    rng = np.random.default_rng(0)
    drawn = {(item.shape, item.texture) for item in (dataset._distractor(rng) for _ in range(500))}
    assert ("ellipse", "spots") not in drawn and len(drawn) > 20
    # With many distractors the labelled boxes are still the class objects only: 1 or 2 of them.
    crowded = photo_objects(length=10, image_size=96, distractors=(6, 6), seed=2)
    assert all(1 <= len(crowded[i][1]["boxes"]) <= 2 for i in range(10))


def test_a_hidden_class_object_is_not_labelled() -> None:
    dataset = photo_objects(length=60, image_size=64, objects=(2, 2), object_size=(0.7, 0.8), seed=1)
    scenes = [dataset.scene(i) for i in range(60)]
    hidden = [s for s in scenes if (s.visible < MIN_VISIBLE).any()]
    assert hidden, "large overlapping pairs hide each other at times"
    for index, scene in enumerate(scenes):
        assert len(dataset[index][1]["boxes"]) == int((scene.visible >= MIN_VISIBLE).sum())


def test_the_patterns_world_renders_as_before_when_sizes_are_not_given() -> None:
    """The per-object size ranges photo_objects draws with leave the demo's images unchanged."""
    dataset = PatternObjectsDataset(
        task="detection", length=3, image_size=64, seed=3, shapes=["circle", "star"]
    )
    for index in range(3):
        rng = dataset.renderer.rng(index)
        items, _ = dataset.drawn_objects(rng)
        state = rng.bit_generator.state
        plain = dataset.renderer.render(rng, items).image
        rng.bit_generator.state = state
        sized = dataset.renderer.render(rng, items, sizes=[dataset.renderer.object_size] * len(items)).image
        assert np.array_equal(plain, sized) and np.array_equal(plain, dataset.scene(index)[0].image)
    assert isinstance(dataset.renderer, PatternRenderer)


def test_bad_parameters_are_refused_with_their_names() -> None:
    with pytest.raises(ToolkitError, match="objects"):
        photo_objects(objects=(0, 2))
    result = run_cli_here(
        "validate",
        "configs/photo_objects_centernet.yaml",
        "data.train.object_size=[0.9, 0.2]",
    )
    assert result.returncode == 2 and "object_size" in result.stderr and "Traceback" not in result.stderr
