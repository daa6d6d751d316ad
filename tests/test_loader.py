"""Loaders: seeded augmentation independent of workers, collate, sharding, skipped bad samples."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO

from toolkit.build import Builder, build_model
from toolkit.data.loader import EpochSampler, make_loader
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

OVERRIDES = [
    "model.input_size=64",
    "model.head.neck_channels=[16, 16, 16]",
    "model.head.head_conv=8",
    "data.train.length=12",
    "data.train.image_size=80",
    "data.val.length=6",
    "data.batch_size=4",
    "data.augment.1.p=1.0",
]


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


@pytest.fixture(scope="module")
def spec(manager: PluginManager):  # type: ignore[no-untyped-def]
    return load_spec(REPO / "configs/centernet_resnet18_shapes.yaml", OVERRIDES, plugins=manager)


@pytest.fixture(scope="module")
def model(spec, manager: PluginManager):  # type: ignore[no-untyped-def]
    return build_model(spec, plugins=manager)


def build_loader(spec, model, split: str, *, plugins: PluginManager):  # type: ignore[no-untyped-def]
    train = split == "train"
    dataset = Builder(plugins).split(spec, model, split).processed
    return make_loader(dataset, spec.data, shuffle=train)


def batches(loader, epoch: int) -> list:  # type: ignore[no-untyped-def]
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_same_seed_same_batches_with_0_and_2_workers(spec, model, manager: PluginManager) -> None:  # type: ignore[no-untyped-def]
    dataset = Builder(manager).split(spec, model, "train").processed
    single = make_loader(dataset, spec.data, shuffle=True, num_workers=0)
    double = make_loader(dataset, spec.data, shuffle=True, num_workers=2)
    for epoch in (0, 1):
        a, b = batches(single, epoch), batches(double, epoch)
        assert len(a) == len(b) == 3
        for left, right in zip(a, b, strict=True):
            assert torch.equal(left.images, right.images)
            for key in left.targets:
                assert torch.equal(left.targets[key], right.targets[key]), key
            assert [m["index"] for m in left.meta] == [m["index"] for m in right.meta]
    first, second = batches(single, 0), batches(single, 1)
    assert not torch.equal(first[0].images, second[0].images), "a new epoch reshuffles and re-augments"


def test_batches_are_model_ready(spec, model, manager: PluginManager) -> None:  # type: ignore[no-untyped-def]
    loader = build_loader(spec, model, "train", plugins=manager)
    batch = next(iter(loader))
    assert batch.images.shape == (4, 3, 64, 64) and batch.images.dtype == torch.float32
    images = batch.images
    assert float(images.min()) == 0.0 and float(images.max()) > 0.9, "[0, 1] with real content"
    # exactly uint8 / 255: scaled, never normalized with mean and std (the model does that)
    torch.testing.assert_close(images, (images * 255).round() / 255, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.normalize(images), (images - model.input_mean) / model.input_std)
    assert batch.targets["heatmap"].shape == (4, 3, 16, 16)
    assert batch.targets["index"].dtype == torch.int64
    assert all("letterbox" in m and "orig_size" in m for m in batch.meta)
    with torch.no_grad():
        outputs = model.eval()(batch.images)
    assert outputs["heatmap"].shape == batch.targets["heatmap"].shape


def test_evaluation_uses_the_model_preprocessing(spec, model, manager: PluginManager) -> None:  # type: ignore[no-untyped-def]
    loader = build_loader(spec, model, "val", plugins=manager)
    steps = [type(t).__name__ for t in loader.dataset.transform.transforms]
    assert steps == ["Letterbox", "ToDtype", "SanitizeBoundingBoxes"]
    first = [b.images for b in batches(loader, 0)]
    again = [b.images for b in batches(loader, 3)]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))


def test_sampler_shards_cover_the_dataset_once() -> None:
    shards = [list(EpochSampler(10, shuffle=True, seed=3, rank=r, world_size=3)) for r in range(3)]
    indices = [i for shard in shards for i, _ in shard]
    assert len(indices) == 12 and set(indices) == set(range(10)), "padded to 4 per rank"
    assert all(len(shard) == 4 for shard in shards)
    single = [i for i, _ in EpochSampler(10, shuffle=True, seed=3)]
    assert sorted(single) == list(range(10))


def test_a_sampler_over_indices_yields_only_those() -> None:
    assert [i for i, _ in EpochSampler(10, shuffle=False, indices=[0, 4, 8])] == [0, 4, 8]
    shuffled = [i for i, _ in EpochSampler(10, shuffle=True, seed=1, indices=[0, 4, 8])]
    assert sorted(shuffled) == [0, 4, 8] and len(EpochSampler(10, shuffle=True, indices=[2, 3])) == 2


def test_missing_resize_is_reported(spec, model, manager: PluginManager) -> None:  # type: ignore[no-untyped-def]
    from toolkit.errors import DataError

    broken = load_spec(spec.model_dump(mode="json"), ["data.augment=[{type: hflip}]"], plugins=manager)
    dataset = Builder(manager).split(broken, model, "train").processed
    with pytest.raises(DataError, match=r"end data.augment with a transform that resizes"):
        dataset[(0, 0)]


def test_class_names_must_match_the_dataset(spec, manager: PluginManager) -> None:  # type: ignore[no-untyped-def]
    from toolkit.errors import ToolkitError

    other = load_spec(spec.model_dump(mode="json"), ["model.class_names=[a, b, c]"], plugins=manager)
    with pytest.raises(
        ToolkitError, match=r"data.train: the dataset's classes .* differ from model.class_names"
    ):
        Builder(manager).dataset(other, "train")
