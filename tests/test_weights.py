"""toolkit.checkpoints: reading state-dict files and loading them into any module (a tiny Sequential here)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from toolkit.checkpoints import load_pretrained, load_weights, read_state_dict
from toolkit.errors import ToolkitError


def _tiny(seed: int = 0) -> nn.Sequential:
    """Keys '0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', ... (Linear then BatchNorm)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
    return model


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _save(tmp_path: Path, obj: object, name: str = "weights.pt") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


# ----------------------------------------------------------------------------------- read_state_dict


def _prefixed(prefix: str) -> Callable[[dict], dict]:
    return lambda sd: {f"{prefix}{k}": v for k, v in sd.items()}


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: sd, id="plain"),
        pytest.param(lambda sd: {"model": sd, "epoch": 2}, id="model"),
        pytest.param(lambda sd: {"state_dict": sd, "optimizer": {"lr": 0.1}}, id="state_dict"),
        pytest.param(lambda sd: {"state_dict": {"model": sd}}, id="nested"),
        pytest.param(_prefixed("module."), id="ddp"),
        pytest.param(
            lambda sd: {**_prefixed("backbone.")(sd), "head.weight": torch.zeros(2)}, id="whole-model"
        ),
        pytest.param(
            lambda sd: {"model": {**_prefixed("module.backbone.")(sd), "module.head.bias": torch.zeros(1)}},
            id="ddp-whole-model",
        ),
    ],
)
def test_read_state_dict_unwraps_checkpoint_layouts(tmp_path: Path, wrap: Callable[[dict], dict]) -> None:
    state = _tiny().state_dict()
    read = read_state_dict(_save(tmp_path, wrap(dict(state))))
    assert read.keys() == state.keys()
    assert all(torch.equal(read[k], v) for k, v in state.items())


def test_read_state_dict_keeps_module_prefix_unless_every_key_has_it(tmp_path: Path) -> None:
    state = {"module.a": torch.zeros(1), "b": torch.ones(1)}
    assert set(read_state_dict(_save(tmp_path, state))) == {"module.a", "b"}


def test_read_state_dict_keeps_only_tensors(tmp_path: Path) -> None:
    read = read_state_dict(_save(tmp_path, {"a": torch.zeros(1), "step": 3, "name": "x"}))
    assert list(read) == ["a"]


def test_read_state_dict_accepts_str_and_path(tmp_path: Path) -> None:
    path = _save(tmp_path, {"a": torch.zeros(1)})
    assert list(read_state_dict(str(path))) == list(read_state_dict(path)) == ["a"]


def test_corrupt_file_raises_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"this is not a pytorch file")
    with pytest.raises(ToolkitError, match=r"cannot read pretrained weights '.*corrupt\.pth'") as info:
        read_state_dict(path)
    assert "torch.save(state_dict)" in str(info.value)


def test_missing_file_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ToolkitError, match=r"cannot read pretrained weights .*absent\.pth"):
        read_state_dict(tmp_path / "absent.pth")


class _Custom:
    """Not an allowed global for weights_only loading."""


def test_arbitrary_pickles_are_refused(tmp_path: Path) -> None:
    path = _save(tmp_path, {"a": torch.zeros(1), "obj": _Custom()}, "pickle.pth")
    with pytest.raises(ToolkitError, match=r"cannot read pretrained weights .*pickle\.pth"):
        read_state_dict(path)


@pytest.mark.parametrize("content", [torch.zeros(3), [torch.zeros(3)]], ids=["tensor", "list"])
def test_non_mapping_raises(tmp_path: Path, content: object) -> None:
    path = _save(tmp_path, content, "tensor.pth")
    with pytest.raises(ToolkitError, match=r"tensor\.pth.* hold a \w+, not a state dict"):
        read_state_dict(path)


# ------------------------------------------------------------------------------------- load_weights


def test_load_weights_copies_every_tensor_without_warning() -> None:
    source, target = _tiny(seed=1), _tiny(seed=2)
    assert not _same_state(source, target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_weights(target, source.state_dict(), source="memory", component="tiny")
    assert _same_state(source, target)


def test_ignored_prefixes_are_dropped_silently() -> None:
    source, target = _tiny(seed=1), _tiny(seed=2)
    state = {**source.state_dict(), "fc.weight": torch.zeros(7, 7), "fc.bias": torch.zeros(7)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_weights(target, state, source="memory", component="tiny", ignore_prefixes=("fc.",))
    assert _same_state(source, target)
    assert "fc.weight" in state  # the caller's mapping is left alone


def test_module_keys_under_an_ignored_prefix_are_not_reported_missing() -> None:
    source, target = _tiny(seed=1), _tiny(seed=2)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("1.")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_weights(target, state, source="memory", component="tiny", ignore_prefixes=("1.",))
    assert torch.equal(target[0].weight, source[0].weight)
    assert not torch.equal(target[1].running_mean, source[1].running_mean)


def test_no_matching_key_raises_with_both_key_lists() -> None:
    state = {f"encoder.{i}": torch.zeros(1) for i in range(7)}
    with pytest.raises(ToolkitError) as info:
        load_weights(_tiny(), state, source="other.pth", component="tiny")
    message = str(info.value)
    assert message.startswith("pretrained weights 'other.pth': no key matches a tiny backbone")
    assert "got 'encoder.0', 'encoder.1', 'encoder.2', 'encoder.3', 'encoder.4', ... (7 in all)" in message
    assert "expected keys like '0.weight', '0.bias'" in message
    assert "is this a tiny state dict? Whole-model checkpoints need the 'backbone.' prefix" in message


def test_only_ignored_keys_count_as_no_match() -> None:
    with pytest.raises(ToolkitError, match=r"no key matches a tiny backbone \(got no tensors at all"):
        load_weights(
            _tiny(), {"0.weight": torch.zeros(4, 3)}, source="x", component="tiny", ignore_prefixes=("0.",)
        )


def test_shape_mismatch_raises_with_both_shapes() -> None:
    state = dict(_tiny().state_dict())
    state["0.weight"] = torch.zeros(4, 5)
    with pytest.raises(ToolkitError) as info:
        load_weights(_tiny(), state, source="wide.pth", component="tiny")
    message = str(info.value)
    assert "pretrained weights 'wide.pth' do not fit tiny: shape mismatch" in message
    assert "'0.weight' file (4, 5) vs model (4, 3)" in message
    assert "(1 key(s)); is this a tiny state dict? Use the backbone the weights were trained with" in message


def test_many_shape_mismatches_are_counted() -> None:
    model = nn.Sequential(*(nn.Linear(2, 2) for _ in range(4)))
    state = {k: torch.zeros(*v.shape, 3) for k, v in model.state_dict().items()}
    with pytest.raises(ToolkitError, match=r"and 3 more \(8 key\(s\)\)"):
        load_weights(model, state, source="x", component="tiny")


def test_missing_keys_warn_once_and_load_the_rest() -> None:
    source, target = _tiny(seed=1), _tiny(seed=2)
    state = {k: v for k, v in source.state_dict().items() if k != "0.bias"}
    with pytest.warns(UserWarning) as record:
        load_weights(target, state, source="partial.pth", component="tiny")
    assert len(record) == 1
    assert str(record[0].message) == (
        "pretrained weights 'partial.pth': 1 tiny key(s) missing, left at their initial values: "
        "'0.bias' (1 in all)"
    )
    assert record[0].filename == __file__  # attributed to the caller
    assert torch.equal(target[0].weight, source[0].weight)
    assert not torch.equal(target[0].bias, source[0].bias)


def test_unexpected_keys_warn_once() -> None:
    state = {**_tiny().state_dict(), **{f"extra.{i}": torch.zeros(1) for i in range(6)}}
    with pytest.warns(UserWarning) as record:
        load_weights(_tiny(), state, source="extra.pth", component="tiny")
    assert len(record) == 1
    assert str(record[0].message) == (
        "pretrained weights 'extra.pth': 6 unexpected key(s) ignored: "
        "'extra.0', 'extra.1', 'extra.2', 'extra.3', 'extra.4', ... (6 in all)"
    )


# ---------------------------------------------------------------------------------- load_pretrained


def test_load_pretrained_reads_and_loads_naming_the_file(tmp_path: Path) -> None:
    source, target = _tiny(seed=1), _tiny(seed=2)
    path = _save(tmp_path, {"model": _prefixed("backbone.")(source.state_dict())}, "ckpt.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_pretrained(target, path, component="tiny")
    assert _same_state(source, target)
    with pytest.warns(UserWarning, match=r"ckpt2\.pt.*1 unexpected key") as record:
        load_pretrained(
            target,
            _save(tmp_path, {**source.state_dict(), "x": torch.zeros(1)}, "ckpt2.pt"),
            component="tiny",
        )
    assert record[0].filename == __file__
    with pytest.raises(
        ToolkitError, match=re.escape(f"{str(tmp_path / 'none.pt')!r}: no key matches a tiny")
    ):
        load_pretrained(target, _save(tmp_path, {"y": torch.zeros(1)}, "none.pt"), component="tiny")


def test_load_pretrained_applies_ignore_prefixes(tmp_path: Path) -> None:
    source, target = _tiny(seed=1), _tiny(seed=2)
    path = _save(tmp_path, {**source.state_dict(), "fc.weight": torch.zeros(2)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_pretrained(target, path, component="tiny", ignore_prefixes=("fc.",))
    assert _same_state(source, target)
