"""The whole chain without a model: dataset -> letterbox -> targets -> decode -> original coordinates
-> pycocotools. Encoded ground truth fed back as a perfect prediction must score AP close to 1."""

from __future__ import annotations

import torch
from conftest import REPO

from toolkit.build import Builder, build_model
from toolkit.data.loader import make_loader
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec
from toolkit_plugins.tasks.detection_metrics import coco_metrics
from toolkit_plugins.tasks.detection_results import detections_to_coco


def perfect_outputs(targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Head outputs that decode exactly to the encoded targets."""
    heatmap = targets["heatmap"].clamp(1e-6, 1 - 1e-6)
    n, _, h, w = heatmap.shape
    size = torch.zeros(n, 2, h * w)
    offset = torch.zeros(n, 2, h * w)
    index = targets["index"].unsqueeze(1).expand(-1, 2, -1)
    mask = targets["mask"].bool().unsqueeze(1).expand(-1, 2, -1)
    size.scatter_(2, index, torch.where(mask, targets["size"].transpose(1, 2), 0.0))
    offset.scatter_(2, index, torch.where(mask, targets["offset"].transpose(1, 2), 0.0))
    return {
        "heatmap": torch.logit(heatmap),
        "size": size.view(n, 2, h, w),
        "offset": offset.view(n, 2, h, w),
    }


def test_encoded_ground_truth_decodes_to_ap_close_to_one() -> None:
    manager = PluginManager()
    spec = load_spec(
        REPO / "configs/centernet_resnet18_shapes.yaml",
        # a non-square input so that the letterbox pads, and images larger than the input
        ["model.input_size=[96, 128]", "data.val.length=40", "data.val.image_size=160", "data.num_workers=0"],
        plugins=manager,
    )
    model = build_model(spec, plugins=manager)
    dataset = Builder(manager).split(spec, model, "val").processed
    detections = []
    evaluator = model.task.evaluator(dataset.dataset, model.class_names)  # the path `toolkit eval` takes
    for batch in make_loader(dataset, spec.data, shuffle=False, batch_size=8):
        decoded = model.head.decode(perfect_outputs(batch.targets))
        detections += detections_to_coco(decoded, batch.meta, spec.model.input_size, score_threshold=0.5)
        results = model.task.results(decoded, batch.meta, model.input_size, model.class_names, 0.5)
        evaluator.update(results, batch.targets, batch.meta)
    metrics = coco_metrics(dataset.dataset.ground_truth(), detections)
    assert metrics["AP50"] > 0.97, metrics
    assert metrics["AP"] > 0.9, metrics
    through_the_task = evaluator.compute()
    assert through_the_task["AP"] == metrics["AP"] and through_the_task["AP50"] == metrics["AP50"]
