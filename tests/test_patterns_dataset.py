"""The fine-tuning demo's data: presence/absence of a patterned target, and the pretraining set.

Counts and imbalance as in the course, held-out images disjoint from the training ones, and a
linear classifier on colour statistics far from solving the task (only the texture in the target
colours does).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import run_cli

from toolkit.build import Builder
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec
from toolkit_plugins.datasets.patterns import DEFAULT_SHAPES, presence
from toolkit_plugins.datasets.patterns_dataset import (
    TEXTURES,
    PatternObjectsDataset,
    texture_pattern,
)

CONFIG = Path("configs/demo_finetune_classifier.yaml")


@pytest.fixture(scope="module")
def demo_data() -> dict:
    return yaml.safe_load(CONFIG.read_text())["data"]


def test_the_demo_config_has_the_course_sizes(demo_data: dict) -> None:
    spec = load_spec(CONFIG, plugins=PluginManager())
    train = Builder(PluginManager()).dataset(spec, "train")
    assert len(train) == 1042 + 1844
    labels = [train.label(i) for i in range(len(train))]
    assert sum(labels) == 1042, "1042 present, 1844 absent: 36 % positive"
    assert train.class_names == ["absent", "present"] and train.task == "classification"
    augment = [a["type"] for a in demo_data["augment"]]
    for course in ("hflip", "affine", "color_jitter", "erasing", "gaussian_noise"):
        assert course in augment, f"the course's augmentation {course} is used"


def test_images_depend_only_on_seed_and_index() -> None:
    a = presence(positives=3, negatives=3, seed=5)
    b = presence(positives=3, negatives=3, seed=5)
    assert all(torch.equal(a[i][0], b[i][0]) for i in (5, 0, 3))
    image, label = a[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64) and label == 1
    assert a[5][1] == 0
    with pytest.raises(IndexError):
        a[6]


def test_a_rendered_image_is_kept_and_handed_out_as_a_copy() -> None:
    dataset = presence(positives=2, negatives=2, seed=7, image_size=32)
    first, _ = dataset[1]
    first.zero_()  # a caller that writes into its image must not change the kept one
    again, _ = dataset[1]
    rng = dataset.renderer.rng(1)
    rendered = torch.from_numpy(dataset.renderer.render(rng, dataset.objects(1, rng)).image)
    assert torch.equal(again, rendered) and again.any()
    other = presence(positives=2, negatives=2, seed=7, image_size=32, object_size=(0.2, 0.3))
    assert not torch.equal(other[1][0], again), "the kept image is keyed by every parameter"


def test_only_the_target_wears_the_target_texture_in_the_target_colours() -> None:
    dataset = presence(positives=60, negatives=60, seed=3)
    for index in range(len(dataset)):
        objects = dataset.objects(index, dataset.renderer.rng(index))
        *distractors, last = objects
        assert 1 <= len(distractors) <= 4
        assert not any(o.target_colours and o.texture == "stripes" for o in distractors)
        if dataset.label(index):
            assert last == dataset.target
        else:  # the decoy: the target's shape and colours, a texture covering as much
            assert (last.shape, last.texture, last.target_colours) == ("ellipse", "checker", True)


def test_pattern_objects_palette_classes_name_the_colours() -> None:
    plain = PatternObjectsDataset(
        task="classification", length=200, image_size=32, seed=4, shapes=DEFAULT_SHAPES
    )
    coloured = PatternObjectsDataset(
        task="classification", length=200, image_size=32, seed=4, shapes=DEFAULT_SHAPES, palette=True
    )
    assert len(coloured.class_names) == 2 * len(plain.class_names) == 64
    assert coloured.class_names[:2] == ["circle/stripes/other", "circle/stripes/yellow-black"]
    shown = set()
    for index in range(len(plain)):
        image, label = plain[index]
        same_image, coloured_label = coloured[index]
        assert torch.equal(image, same_image), "palette changes the labels, not the images"
        assert coloured.class_names[coloured_label].startswith(plain.class_names[label] + "/")
        shown.add(coloured.class_names[coloured_label].rsplit("/", 1)[1])
    assert shown == {"other", "yellow-black"}


def test_pattern_objects_with_chosen_textures_draws_only_those() -> None:
    dataset = PatternObjectsDataset(
        task="classification", length=60, image_size=32, seed=5, shapes=["ellipse", "square"],
        textures=["stripes", "checker"], palette=True,
    )  # fmt: skip
    assert dataset.class_names[:4] == [
        "ellipse/stripes/other", "ellipse/stripes/yellow-black",
        "ellipse/checker/other", "ellipse/checker/yellow-black",
    ]  # fmt: skip
    assert len(dataset.class_names) == 8
    drawn = set()
    for index in range(len(dataset)):
        (item,), (label,) = dataset.drawn_objects(dataset.renderer.rng(index))
        assert dataset.class_names[label] == "/".join(
            [item.shape, item.texture, "yellow-black" if item.target_colours else "other"]
        )
        assert dataset[index][1] == label
        drawn.add(item.texture)
    assert drawn == {"stripes", "checker"}
    everything = PatternObjectsDataset(
        task="classification", length=4, image_size=32, seed=5, shapes=["ellipse"]
    )
    assert everything.textures == ["stripes", "checker", "spots", "solid"], "the default: all four"


def _digests(dataset) -> set[str]:  # type: ignore[no-untyped-def]
    return {hashlib.sha1(dataset[i][0].numpy().tobytes()).hexdigest() for i in range(len(dataset))}


def test_held_out_images_are_disjoint_from_training_ones(demo_data: dict) -> None:
    train = presence(**{**_params(demo_data["train"]), "positives": 150, "negatives": 150})
    test = presence(**{**_params(demo_data["val"]), "positives": 150, "negatives": 150})
    assert demo_data["train"]["seed"] != demo_data["val"]["seed"]
    train_digests, test_digests = _digests(train), _digests(test)
    assert len(train_digests) == 300 and len(test_digests) == 300, "no repeated image within a set"
    assert not train_digests & test_digests


def _params(section: dict) -> dict:
    return {k: v for k, v in section.items() if k != "type"}


def colour_features(images: torch.Tensor) -> torch.Tensor:
    """Per-image colour statistics: channel means and stds, 8-bin channel histograms, the mean of
    the darkest and brightest tenth of pixels, and the fraction of yellow and of near-black pixels."""
    x = images.float() / 255
    flat = x.flatten(2)  # [N,3,P]
    hist = (
        torch.stack(
            [torch.stack([torch.histc(c, bins=8, min=0, max=1) for c in image]) for image in flat]
        ).flatten(1)
        / flat.shape[-1]
    )
    brightness = flat.mean(1).sort(dim=1).values
    tenth = brightness.shape[1] // 10
    r, g, b = flat[:, 0], flat[:, 1], flat[:, 2]
    yellow = ((r > 0.6) & (g > 0.45) & (b < 0.35)).float().mean(1, keepdim=True)
    dark = ((r < 0.25) & (g < 0.25) & (b < 0.25)).float().mean(1, keepdim=True)
    return torch.cat(
        [
            flat.mean(2),
            flat.std(2),
            hist,
            brightness[:, :tenth].mean(1, keepdim=True),
            brightness[:, -tenth:].mean(1, keepdim=True),
            yellow,
            dark,
            yellow * dark,
        ],
        1,
    )


def balanced_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    recalls = [(predicted[labels == c] == c).float().mean().item() for c in (0, 1)]
    return float(np.mean(recalls))


def test_a_colour_histogram_classifier_stays_near_chance(demo_data: dict) -> None:
    """Logistic regression on colour statistics, fitted on 900 images, scored on 600 held-out ones."""
    train = presence(**{**_params(demo_data["train"]), "positives": 330, "negatives": 570})
    test = presence(**_params(demo_data["val"]))
    samples = [train[i] for i in range(len(train))]
    x = colour_features(torch.stack([s[0] for s in samples]))
    y = torch.tensor([s[1] for s in samples])
    test_samples = [test[i] for i in range(len(test))]
    x_test = colour_features(torch.stack([s[0] for s in test_samples]))
    y_test = torch.tensor([s[1] for s in test_samples])
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, x_test = (x - mean) / std, (x_test - mean) / std
    linear = torch.nn.Linear(x.shape[1], 2)
    weights = torch.tensor([1 / (y == 0).float().mean(), 1 / (y == 1).float().mean()])  # balanced
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=200)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (
            torch.nn.functional.cross_entropy(linear(x), y, weight=weights)
            + 1e-3 * linear.weight.square().sum()
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        fitted = balanced_accuracy(linear(x).argmax(1), y)
        held_out = balanced_accuracy(linear(x_test).argmax(1), y_test)
    assert fitted > 0.5, "the baseline did fit something"
    assert held_out < 0.65, f"colour statistics alone reach {held_out:.3f} balanced accuracy"


def test_textures_cover_what_they_claim() -> None:
    phase = np.array([0.0, 0.0])
    assert texture_pattern("stripes", 64, 8.0, 0.3, phase).mean() == pytest.approx(0.5, abs=0.05)
    assert texture_pattern("checker", 64, 8.0, 0.3, phase).mean() == pytest.approx(0.5, abs=0.05)
    assert 0.15 < texture_pattern("spots", 64, 8.0, 0.3, phase).mean() < 0.4
    assert not texture_pattern("solid", 64, 8.0, 0.3, phase).any()


def test_pattern_objects_detection_targets_fit_their_images() -> None:
    dataset = PatternObjectsDataset(task="detection", length=20, image_size=64, seed=3, shapes=DEFAULT_SHAPES)
    assert len(dataset.class_names) == len(DEFAULT_SHAPES) * len(TEXTURES)
    counts = []
    for i in range(len(dataset)):
        image, target = dataset[i]
        boxes = target["boxes"]
        counts.append(len(boxes))
        assert image.shape == (3, 64, 64)
        assert (
            (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        )
        assert ((target["labels"] >= 0) & (target["labels"] < len(dataset.class_names))).all()
    assert min(counts) >= 1 and max(counts) <= 5
    truth = dataset.ground_truth()
    assert len(truth["images"]) == 20 and len(truth["annotations"]) == sum(counts)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.train.target_shape=blob", "unknown shape 'blob'"),
        ("data.train.target_texture=plaid", "target_texture"),
        ("data.train.distractors=[4,1]", "min <= max"),
        ("data.train.positives=-1", "positives"),
    ],
)
def test_bad_presence_parameters_are_named(override: str, message: str) -> None:
    result = run_cli("validate", str(CONFIG), override)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
