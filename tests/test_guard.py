"""`toolkit.guard`: a plain component guarded once names itself in every failure of its methods, stays
an instance of its class for protocol checks, and pickles (DataLoader workers) and copies as itself."""

from __future__ import annotations

import copy
import pickle

import pytest

from toolkit.contracts import Task
from toolkit.errors import ComponentError, ToolkitError
from toolkit.guard import Guarded, component_label, guard, label_as
from toolkit_plugins.tasks.detection_task import DetectionTask


class Counter:
    """A plain object with state, a method that fails, and one that raises a user error."""

    def __init__(self) -> None:
        self.calls = 0

    def count(self, step: int = 1) -> int:
        self.calls += step
        return self.calls

    def fail(self) -> None:
        raise KeyError("boxes")

    def refuse(self) -> None:
        raise ToolkitError("a user mistake, said once")


def test_a_failing_method_names_the_component_and_the_method() -> None:
    counter = Counter()
    label_as(counter, "task 'counter' from plugin 'fixture' (module fixture)")
    guarded = guard(counter)
    assert isinstance(guarded, Counter) and isinstance(guarded, Guarded)
    assert guarded.count(2) == 2 and guarded.calls == 2 and counter.calls == 0  # its own state
    expected = r"task 'counter' from plugin 'fixture' .* failed while running fail: KeyError: 'boxes'"
    with pytest.raises(ComponentError, match=expected):
        guarded.fail()
    with pytest.raises(ToolkitError, match=r"^a user mistake, said once$"):
        guarded.refuse()
    assert guard(guarded) is guarded


def test_a_guarded_task_keeps_its_protocol_pickles_and_copies() -> None:
    task = DetectionTask()
    label_as(task, "task 'detection'")
    guarded = guard(task)
    assert isinstance(guarded, Task) and isinstance(guarded, DetectionTask)
    for twin in (pickle.loads(pickle.dumps(guarded)), copy.deepcopy(guarded), copy.copy(guarded)):
        assert type(twin) is type(guarded) and component_label(twin) == "task 'detection'"
        assert twin.metric_names == task.metric_names
    with pytest.raises(ComponentError, match=r"task 'detection' failed while running prepare_target"):
        guarded.prepare_target("not a target")
