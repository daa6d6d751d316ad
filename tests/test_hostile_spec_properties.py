"""Property-based hostile input: mutated spec files and override lists never end in a traceback.

`load_spec` either returns a Spec or raises ToolkitError (the CLI's exit 2); any other exception is
a bug. Mutations: values replaced, keys removed or added anywhere in a valid spec; the spec's text
cut, spliced and corrupted; override lists of real and made-up keys with arbitrary YAML values.
Examples are derandomized (the same every run) and bounded so the module runs in seconds; a few
mutated files also go through the CLI. `HOSTILE_EXAMPLES=5000` searches longer, with random examples.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from hostile_runner import Case, run_cases
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.errors import ToolkitError
from toolkit.plugins import PluginManager
from toolkit.spec import Spec, load_spec

SPEC_FILE = REPO / "configs" / "centernet_resnet18_shapes.yaml"
SPEC_TEXT = SPEC_FILE.read_text()
SPEC_DATA = yaml.safe_load(SPEC_TEXT)
FAST = settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "120")),
    deadline=None,
    derandomize="HOSTILE_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


def _load(source: Any, overrides: list[str], manager: PluginManager) -> None:
    try:
        spec = load_spec(source, overrides, plugins=manager)
    except ToolkitError as exc:
        assert str(exc).strip(), "a user error needs a message"
        return
    assert isinstance(spec, Spec)
    spec.model_dump(mode="json")


# -- values ----------------------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["resnet18", "centernet", "adamw", "sgd", "cosine", "shapes", "hflip", "resize", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of the nested mapping/list (leaves and sections)."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


PATHS = _paths(SPEC_DATA)


def _copy(data: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(data))


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict:
    data = _copy(SPEC_DATA)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(PATHS))
        parent = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(values)
            elif action == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=10))] = draw(values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    return data


@FAST
@given(mutated_specs())
def test_mutated_spec_mappings(manager: PluginManager, data: dict) -> None:
    _load(data, [], manager)


# -- text ------------------------------------------------------------------------------------------
SNIPPETS = ["[", "{", "&a ", "*a", "<<: ", "!!binary ", ": ", "\n  ", "- ", ".inf", "'"]


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    text = SPEC_TEXT
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        start = draw(st.integers(min_value=0, max_value=len(text)))
        end = draw(st.integers(min_value=start, max_value=min(len(text), start + 40)))
        insert = draw(
            st.one_of(
                st.text(max_size=20),
                st.sampled_from(
                    ["[", "{", "&a ", "*a", "<<: ", "!!binary ", ": ", "\n  ", "- ", ".inf", "'"]
                ),
                st.just(text[draw(st.integers(0, len(text) - 1)) :][:30]),
            )
        )
        text = text[:start] + insert + text[end:]
    return text


@FAST
@given(mutated_texts(), st.sampled_from([".yaml", ".json"]))
def test_mutated_spec_files(manager: PluginManager, text: str, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"spec{suffix}"
        path.write_text(text, encoding="utf-8")
        _load(path, [], manager)


# -- overrides -------------------------------------------------------------------------------------
KEYS = [".".join(str(part) for part in path) for path in PATHS] + ["epochs", "lr", "batch_size", "extends"]
keys = st.one_of(
    st.sampled_from(KEYS),
    st.builds(lambda key, extra: f"{key}.{extra}", st.sampled_from(KEYS), st.text(max_size=6)),
    st.text(max_size=15),
)
RAW_VALUES = ["[", "{a: 1", ".inf", "-.nan", "1e999", "[1, 2]", "null", "~", "&a [*a]", "0x" + "f" * 50]
raw_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["[", "{a: 1", ".inf", "-.nan", "1e999", "[1, 2]", "null", "~", "&a [*a]", "0x" + "f" * 50]
    ),
    values.map(lambda value: yaml.safe_dump(value, default_flow_style=True).strip()),
)
overrides = st.lists(
    st.one_of(st.builds(lambda key, value: f"{key}={value}", keys, raw_values), st.text(max_size=20)),
    max_size=4,
)


@FAST
@given(overrides)
def test_random_override_lists(manager: PluginManager, items: list[str]) -> None:
    _load(SPEC_FILE, items, manager)


# -- a few through the CLI -------------------------------------------------------------------------
def _corrupt(seed: int) -> str:
    rng = random.Random(seed)
    text = list(SPEC_TEXT)
    for _ in range(8):
        text[rng.randrange(len(text))] = rng.choice("[]{}:&*!-'\"\n\t #,.")
    return "".join(text)


def test_corrupted_files_through_the_cli(tmp_path: Path) -> None:
    """Byte-level corruptions of a shipped spec: `toolkit validate` exits 0 or 2, never a traceback."""
    cases = {}
    for seed in range(8):
        path = tmp_path / f"spec{seed}.yaml"
        path.write_text(_corrupt(seed))
        cases[f"seed{seed}"] = Case(["validate", str(path)])
    cases["cut"] = Case(["validate", str(_write(tmp_path / "cut.yaml", SPEC_TEXT[: len(SPEC_TEXT) // 3]))])
    for name, result in run_cases(cases, tmp_path, memory_limit=2 << 30).items():
        assert result.code in (0, 2), f"{name}: {result.stderr}"
        assert "Traceback" not in result.stderr, f"{name}: {result.stderr}"
        if result.code == 2:
            assert result.stderr.startswith("toolkit: error: "), f"{name}: {result.stderr}"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
