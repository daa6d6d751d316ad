"""`model.predict` and `toolkit.load_model`: eval mode without side effects, any inputs, original pixels,
the same detections as the run's evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import FIXTURE_PLUGINS, REPO

import toolkit
from toolkit.build import Builder, build_model
from toolkit.errors import ToolkitError
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

SMALL = [
    "model.input_size=64",
    "model.head.neck_channels=[16, 16, 16]",
    "model.head.head_conv=8",
    "data.train.length=16",
    "data.train.image_size=64",
    "data.val.length=8",
    "data.val.image_size=80",
    "data.num_workers=0",
    "data.batch_size=8",
]


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


@pytest.fixture
def model(manager: PluginManager):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    spec = load_spec(REPO / "configs/centernet_resnet18_shapes.yaml", SMALL, plugins=manager)
    return build_model(spec, plugins=manager)


def images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [
        torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8, generator=generator),
        torch.rand(3, 90, 40, generator=generator),
        torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=generator),
    ]


def test_predict_leaves_modes_and_batchnorm_statistics_alone(model) -> None:  # type: ignore[no-untyped-def]
    model.train()
    model.backbone.layer1.eval()  # a mixed state must come back as it was
    flags = {name: module.training for name, module in model.named_modules()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    results = model.predict(images())
    assert len(results) == 3
    assert {name: module.training for name, module in model.named_modules()} == flags
    for name, value in model.named_buffers():
        assert torch.equal(value, buffers[name]), name
    assert not any(p.grad is not None for p in model.parameters())


def test_an_image_alone_or_in_a_mixed_batch_gives_the_same_result(model) -> None:  # type: ignore[no-untyped-def]
    model.train()  # predict switches to eval mode itself
    together = model.predict(images(), score_threshold=0.0)
    for index, image in enumerate(images()):
        alone = model.predict(image, score_threshold=0.0)[0]
        for key in ("boxes", "scores"):
            torch.testing.assert_close(alone[key], together[index][key], rtol=1e-5, atol=1e-4)
        assert torch.equal(alone["labels"], together[index]["labels"])
        assert alone["class_names"] == [model.class_names[c] for c in alone["labels"].tolist()]


def test_boxes_come_back_in_original_pixels_exactly(model) -> None:  # type: ignore[no-untyped-def]
    """A 128x256 image letterboxed into 64x64: scale 0.25, 16 px of padding above and below."""

    def fixed(outputs: dict) -> dict:
        n = outputs["heatmap"].shape[0]
        return {
            "boxes": torch.tensor([[8.0, 20.0, 40.0, 36.0], [0.0, 16.0, 64.0, 48.0]]).expand(n, 2, 4),
            "scores": torch.tensor([0.9, 0.8]).expand(n, 2),
            "labels": torch.tensor([1, 2]).expand(n, 2),
        }

    model.head.decode = fixed
    image = torch.zeros(3, 128, 256, dtype=torch.uint8)
    result = model.predict(image)[0]
    assert result["boxes"].tolist() == [[32.0, 16.0, 160.0, 80.0], [0.0, 0.0, 256.0, 128.0]]
    assert result["class_names"] == ["square", "triangle"]


def test_predict_accepts_paths_pil_images_and_tensors(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    image = images()[0]
    path = tmp_path / "image.png"
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    from_tensor = model.predict(image)[0]
    for other in (str(path), path, Image.open(path), image.float() / 255):
        result = model.predict(other)[0]
        torch.testing.assert_close(result["scores"], from_tensor["scores"], rtol=1e-4, atol=1e-4)
    batch = model.predict(torch.stack([image.float() / 255] * 2))
    assert len(batch) == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.rand(3, 20, 20) * 255, r"must lie in \[0, 1\]"),
        (torch.zeros(4, 20, 20), r"expected \[3,H,W\]"),
        ("missing.png", "image file not found"),
        (42, "pass tensors"),
        (torch.zeros(3, 8, 8, dtype=torch.int32), "dtype"),
    ],
)
def test_predict_refuses_bad_inputs_clearly(model, bad: object, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ToolkitError, match=message):
        model.predict(bad)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A short detection run on shapes with validation (tiny backbone, two epochs)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FIXTURE_PLUGINS))
        return _train_tiny_detector(tmp_path_factory.mktemp("run") / "run")


def _train_tiny_detector(run: Path) -> tuple[Path, object]:
    manager = PluginManager(modules=["fixture_tiny"])
    spec = load_spec(
        {
            "plugins": ["fixture_tiny"],
            "model": {
                "backbone": {"type": "tiny", "width": 16},
                "head": {"type": "centernet", "neck_channels": [16, 16, 16], "head_conv": 8},
                "input_size": 64,
                "class_names": ["circle", "square", "triangle"],
            },
            "data": {
                "train": {"type": "shapes", "length": 32, "image_size": 64, "seed": 0},
                "val": {"type": "shapes", "length": 8, "image_size": 96, "seed": 1},
                "augment": [{"type": "resize"}],
                "batch_size": 8,
                "num_workers": 0,
            },
            "train": {"epochs": 2, "optimizer": {"type": "adamw", "lr": 0.01}, "device": "cpu"},
        },
        plugins=manager,
    )
    toolkit.train(spec, out_dir=run, plugins=manager, show_progress=False)
    return run, spec


@pytest.mark.usefixtures("fixture_plugins_on_path")
def test_load_model_gives_the_detections_of_the_run_evaluation(trained_run) -> None:  # type: ignore[no-untyped-def]
    run, spec = trained_run
    manager = PluginManager()
    model = toolkit.load_model(run / "best.pt", plugins=manager)  # the checkpoint names its plugins
    assert not model.training and model.task.name == "detection"
    dataset = Builder(manager).dataset(spec, "val")
    samples = [dataset[index] for index in range(len(dataset))]
    results = model.predict([image for image, _ in samples])
    evaluator = model.task.evaluator(dataset, model.class_names)
    meta = [{"image_id": target["image_id"]} for _, target in samples]
    evaluator.update(results, {}, meta)
    metrics = evaluator.compute()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in records if r["kind"] == "val"][-1]["metrics"]
    assert metrics["detections"] == final["detections"] > 0
    for key in ("AP", "AP50", "AP75", "VOC_mAP50"):
        assert metrics[key] == pytest.approx(final[key], abs=1e-6, nan_ok=True), key


def test_load_model_refuses_what_is_not_a_run_checkpoint(tmp_path: Path) -> None:
    plain = tmp_path / "weights.pt"
    torch.save({"model": {}}, plain)
    with pytest.raises(ToolkitError, match="carries no spec"):
        toolkit.load_model(plain)
    with pytest.raises(ToolkitError, match="not found"):
        toolkit.load_model(tmp_path / "missing.pt")
