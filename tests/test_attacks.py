"""Attacks against references: FGSM's closed form, PGD's FGSM special case, the eps ball and [0, 1]
(hypothesis), a patch that changes only its placed square, and a model left exactly as it was."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.attacks.objectives import attack_mode, resolve_objective
from toolkit.build import Builder, build_model
from toolkit.errors import ToolkitError
from toolkit.plugins import PluginManager
from toolkit.spec import Spec, load_spec
from toolkit_plugins.attacks.gradient_attacks import FGSM, PGD
from toolkit_plugins.attacks.patch_attack import PatchAttack

PLUGINS = PluginManager()


def _spec(head: dict, class_names: list[str], size: int = 32, **sections: dict) -> Spec:
    model = {
        "backbone": {"type": "resnet18", "pretrained": "none"},
        "head": head,
        "input_size": size,
        "class_names": class_names,
    }
    return load_spec({"model": model, **sections}, plugins=PLUGINS)


def _model(head: dict, class_names: list[str], size: int = 32) -> torch.nn.Module:
    spec = _spec(head, class_names, size)
    torch.manual_seed(0)
    model = build_model(spec, plugins=PLUGINS)
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so a change would show
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    return _model({"type": "classification"}, ["absent", "present", "other"])


@pytest.fixture(scope="module")
def detector() -> torch.nn.Module:
    return _model(
        {"type": "centernet", "skips": True, "neck_channels": [16, 16, 16], "head_conv": 16}, ["a", "b"], 64
    )


def _batch(n: int = 4, size: int = 32, seed: int = 1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand((n, 3, size, size), generator=generator)
    return images, {"label": torch.arange(n) % 3}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_fgsm_equals_the_closed_form(classifier: torch.nn.Module) -> None:
    images, targets = _batch()
    eps = 4 / 255
    x = images.clone().requires_grad_(True)
    classifier.eval()
    loss = F.cross_entropy(classifier(x)["logits"], targets["label"], reduction="sum")
    (gradient,) = torch.autograd.grad(loss, x)
    expected = (images + eps * gradient.sign()).clamp(0, 1)
    adversarial = FGSM(eps=eps)(classifier, images, targets)
    assert torch.equal(adversarial, expected)
    assert (adversarial != images).float().mean() > 0.5, "the attack does move pixels"


def test_targeted_fgsm_descends_the_target_cross_entropy(classifier: torch.nn.Module) -> None:
    images, targets = _batch()
    x = images.clone().requires_grad_(True)
    loss = F.cross_entropy(classifier(x)["logits"], torch.full((4,), 2), reduction="sum")
    (gradient,) = torch.autograd.grad(loss, x)
    expected = (images - 0.01 * gradient.sign()).clamp(0, 1)
    assert torch.equal(FGSM(eps=0.01, target_class="other")(classifier, images, targets), expected)


def test_pgd_with_one_full_step_and_no_random_start_is_fgsm(classifier: torch.nn.Module) -> None:
    images, targets = _batch()
    pgd = PGD(eps=8 / 255, steps=1, step_size=8 / 255, random_start=False)
    assert torch.equal(pgd(classifier, images, targets), FGSM(eps=8 / 255)(classifier, images, targets))


def test_pgd_raises_the_loss_beyond_fgsm(classifier: torch.nn.Module) -> None:
    images, targets = _batch(8)

    def loss(x: torch.Tensor) -> float:
        with torch.no_grad():
            return F.cross_entropy(classifier(x)["logits"], targets["label"]).item()

    fgsm = loss(FGSM(eps=2 / 255)(classifier, images, targets))
    pgd = loss(PGD(eps=2 / 255, steps=10)(classifier, images, targets))
    assert loss(images) < fgsm < pgd


@settings(max_examples=25, deadline=None)
@given(
    eps=st.floats(0.0, 0.3),
    steps=st.integers(1, 3),
    norm=st.sampled_from(["linf", "l2"]),
    random_start=st.booleans(),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.0, 1.0),
)
def test_pgd_stays_in_the_ball_and_in_the_unit_cube(
    classifier: torch.nn.Module,
    eps: float,
    steps: int,
    norm: str,
    random_start: bool,
    seed: int,
    scale: float,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand((2, 3, 32, 32), generator=generator) * scale  # some near 0, some spread
    images[0, 0, :4] = 1.0  # pixels at the bounds
    targets = {"label": torch.tensor([0, 1])}
    adversarial = PGD(eps=eps, steps=steps, norm=norm, random_start=random_start, seed=seed)(
        classifier, images, targets
    )
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    delta = (adversarial - images).flatten(1)
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert delta.norm(dim=1).max() <= eps + 1e-5


@settings(max_examples=15, deadline=None)
@given(eps=st.floats(0.0, 0.5), seed=st.integers(0, 2**16))
def test_fgsm_stays_in_the_ball_and_in_the_unit_cube(
    classifier: torch.nn.Module, eps: float, seed: int
) -> None:
    images = torch.rand((2, 3, 32, 32), generator=torch.Generator().manual_seed(seed))
    adversarial = FGSM(eps=eps)(classifier, images, {"label": torch.tensor([2, 0])})
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert (adversarial - images).abs().max() <= eps + 1e-6


def test_a_patch_changes_only_its_placed_square(classifier: torch.nn.Module) -> None:
    images, targets = _batch(6, size=64)
    attack = PatchAttack(area=0.1, steps=3, target_class="present", seed=3)
    attack.fit(classifier, [(images, targets)])
    assert attack.side == 20, "floor(sqrt(0.1 * 64 * 64))"
    theta = attack.transforms(6, 64, 64, attack.side)
    pasted, mask = attack.paste(images, attack.patch, theta)
    outside = mask.expand_as(images) == 0
    assert torch.equal(pasted[outside], images[outside])
    assert outside.float().mean() > 0.85
    covered = mask.flatten(1).sum(1) / (64 * 64)
    assert (covered <= 0.1 + 1e-4).all() and (covered > 0.05).all(), covered
    assert pasted.min() >= 0 and pasted.max() <= 1


class ColourClassifier(torch.nn.Module):
    """Logits from the mean colour: a model a sticker can sway, with a task and class names."""

    def __init__(self) -> None:
        super().__init__()
        from toolkit_plugins.tasks.classification_task import ClassificationTask

        self.task = ClassificationTask()
        self.class_names = ["red", "green", "blue"]
        self.linear = torch.nn.Linear(3, 3)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(3) * 10)
            self.linear.bias.zero_()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.linear(images.mean((2, 3)))}


def test_a_fitted_patch_pulls_towards_its_target() -> None:
    """On held-out images, at the same placements, the fitted patch beats a random one by far."""
    model = ColourClassifier()
    images, targets = _batch(16, size=64, seed=5)
    attack = PatchAttack(area=0.1, steps=60, lr=0.2, target_class="blue", seed=1)
    attack.fit(model, [(images[:8], targets), (images[8:], targets)])
    held_out = _batch(16, size=64, seed=6)[0]
    theta = attack.transforms(16, 64, 64, attack.side)
    random_patch = torch.rand(attack.patch.shape, generator=torch.Generator().manual_seed(0))

    def blue_probability(patch: torch.Tensor) -> float:
        with torch.no_grad():
            pasted, _ = attack.paste(held_out, patch, theta)
            return model(pasted)["logits"].softmax(1)[:, 2].mean().item()

    fitted, random = blue_probability(attack.patch), blue_probability(random_patch)
    assert fitted > random + 0.1, (fitted, random)
    blue = attack.patch.mean((1, 2))
    assert blue[2] > 0.9 and blue[0] < 0.1 and blue[1] < 0.1, "the optimum is a pure blue sticker"


@pytest.mark.parametrize(
    "attack",
    [
        FGSM(eps=0.03),
        PGD(eps=0.03, steps=3),
        PGD(eps=0.5, steps=2, norm="l2"),
        PatchAttack(area=0.1, steps=2, target_class="other"),
    ],
    ids=["fgsm", "pgd", "pgd-l2", "patch"],
)
def test_the_model_is_left_exactly_as_it_was(classifier: torch.nn.Module, attack: object) -> None:
    model = copy.deepcopy(classifier)
    model.train()  # a training-mode model: the attack must still run it in eval mode
    for parameter in model.parameters():
        parameter.grad = None
    before = _state(model)
    flags = [p.requires_grad for p in model.parameters()]
    images, targets = _batch(4, size=64)
    attack(model, images, targets)  # type: ignore[operator]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "weights and BN buffers"
    assert all(p.grad is None for p in model.parameters()), "no gradient reached the parameters"
    assert [p.requires_grad for p in model.parameters()] == flags
    assert model.training and all(m.training for m in model.modules())


def test_attack_mode_restores_flags_after_an_exception(classifier: torch.nn.Module) -> None:
    classifier.train()
    with pytest.raises(RuntimeError), attack_mode(classifier):
        assert not classifier.training
        raise RuntimeError("inside")
    assert classifier.training and all(p.requires_grad for p in classifier.parameters())
    classifier.eval()


def _detector_targets(detector: torch.nn.Module, n: int) -> dict[str, torch.Tensor]:
    from torchvision import tv_tensors

    encoder = detector.head.target_encoder((64, 64))
    encoded = []
    for i in range(n):
        boxes = tv_tensors.BoundingBoxes(
            torch.tensor([[8.0 + i, 8.0, 30.0 + i, 28.0], [36.0, 30.0, 60.0, 58.0]]),
            format="XYXY",
            canvas_size=(64, 64),
        )
        encoded.append(encoder(boxes, torch.tensor([0, 1])))
    return {k: torch.stack([e[k] for e in encoded]) for k in encoded[0]}


@pytest.mark.parametrize("objective", ["vanishing", "untargeted", "mislabel", "appear"])
def test_detector_objectives_rise_under_pgd(detector: torch.nn.Module, objective: str) -> None:
    from toolkit.attacks.objectives import attack_loss

    images = torch.rand((2, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    targets = _detector_targets(detector, 2)
    target_class = None if objective in ("vanishing", "untargeted") else "a"
    name, index = resolve_objective(detector, objective, target_class)

    def value(x: torch.Tensor) -> torch.Tensor:
        with attack_mode(detector), torch.no_grad():
            return attack_loss(detector, x, targets, objective=name, target_class=index)

    adversarial = PGD(eps=8 / 255, steps=5, objective=objective, target_class=target_class)(
        detector, images, targets
    )
    assert (value(adversarial) > value(images)).all()


def test_vanishing_lowers_the_heatmap_at_the_objects(detector: torch.nn.Module) -> None:
    """The heatmap drops around the objects (their ground-truth Gaussians), not elsewhere (an
    untrained detector: small moves, but in the right place)."""
    images = torch.rand((2, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    targets = _detector_targets(detector, 2)
    adversarial = PGD(eps=8 / 255, steps=5)(detector, images, targets)  # the detection default: vanishing
    near_objects = targets["heatmap"].amax(dim=1, keepdim=True) > 0.1
    far = ~near_objects
    with torch.no_grad():
        before = torch.sigmoid(detector(images)["heatmap"]).amax(dim=1, keepdim=True)
        after = torch.sigmoid(detector(adversarial)["heatmap"]).amax(dim=1, keepdim=True)
    assert near_objects.sum() >= 20
    assert after[near_objects].mean() < before[near_objects].mean()
    # away from the objects the attack has no reason to push: those scores move far less
    shift_near = (before - after)[near_objects].mean()
    assert shift_near > 2 * (before - after)[far].mean()


@pytest.mark.parametrize(
    ("objective", "target_class", "message"),
    [
        ("vanish", None, "attack objective 'vanish' is not one of"),
        ("targeted", None, "needs a target_class"),
        (None, "dog", "'dog' is not a class of the model"),
    ],
)
def test_bad_objectives_are_named(
    classifier: torch.nn.Module, objective: str | None, target_class: str | None, message: str
) -> None:
    images, targets = _batch()
    with pytest.raises(ToolkitError, match=message):
        FGSM(eps=0.01, objective=objective, target_class=target_class)(classifier, images, targets)


def test_a_limited_attack_spreads_its_images_over_the_split() -> None:
    """A split sorted by class (the presence scenes: positives first) gives every class."""
    from toolkit.attacks.run import spread_indices

    assert spread_indices(600, 200)[:4] == [0, 3, 6, 9] and spread_indices(600, 200)[-1] == 597
    assert spread_indices(10, 3) == [0, 3, 6] and spread_indices(10, 10) is None
    assert spread_indices(10, None) is None and len(set(spread_indices(7, 6))) == 6


def test_attack_batches_take_the_spread_images() -> None:
    from toolkit.attacks.run import attack_data

    shapes = {"type": "shapes", "task": "classification", "image_size": 32}
    data = {"train": {**shapes, "length": 8}, "val": {**shapes, "length": 12}, "batch_size": 3}
    data["augment"] = [{"type": "resize"}]
    spec = _spec({"type": "classification"}, ["absent", "present"], data=data)
    classifier = build_model(spec, plugins=PLUGINS)
    kept = attack_data(spec, classifier, "val", Builder(PLUGINS), limit=4, batch_size=None).batches
    images = torch.cat([batch.images for batch in kept])
    dataset = Builder(PLUGINS).split(spec, classifier, "val", train=False).processed
    assert torch.equal(images, torch.stack([dataset[(i, 0)].image for i in (0, 3, 6, 9)]))
