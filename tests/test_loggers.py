"""Run loggers (`train.loggers`): the built-ins' files, resume, isolation of a failing logger, build and
spec errors, a third-party logger through a real entry point. Driven by hand-made records, no training."""

from __future__ import annotations

import sys
import textwrap
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import write_distribution

import toolkit
from toolkit.build import Builder
from toolkit.engine.loggers import LoggerWarning, RunLoggers, scalars
from toolkit.engine.logs import MetricsLog, read_metrics
from toolkit.errors import PluginError, ToolkitError
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec
from toolkit.spec.errors import SpecError

MODEL = {
    "backbone": {"type": "resnet18"},
    "head": {"type": "centernet"},
    "input_size": 64,
    "class_names": ["cat", "dog"],
}
PER_CLASS = {"cat": {"AP": 0.25, "AP50": 0.5, "objects": 3}, "dog": {"AP": 0.75, "AP50": 1.0, "objects": 2}}


def train(epoch: int, step: int, loss: float) -> dict[str, Any]:
    return {
        "kind": "train",
        "epoch": epoch,
        "step": step,
        "lr": 0.01 / epoch,
        "loss": {"loss": loss, "heatmap": loss / 2},
        "images_per_s": 100.0 + step,
    }


def val(epoch: int, step: int, ap: float) -> dict[str, Any]:
    metrics = {"AP": ap, "AP50": ap + 0.25, "per_class": PER_CLASS, "confusion_matrix": [[1, 0], [0, 1]]}
    return {"kind": "val", "epoch": epoch, "step": step, "metrics": metrics}


def epoch_record(epoch: int, step: int, loss: float, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    record = {
        "kind": "epoch",
        "epoch": epoch,
        "step": step,
        "lr": 0.01 / epoch,
        "train_loss": {"loss": loss, "heatmap": loss / 2},
        "seconds": 1.5 * epoch,
    }
    return record if metrics is None else {**record, "metrics": metrics}


def epoch_records(epoch: int, loss: float = 1.0) -> list[dict[str, Any]]:
    """What the trainer logs for one epoch of 2 steps; epochs >= 2 are evaluated."""
    step = 2 * epoch
    records = [train(epoch, step - 1, loss), train(epoch, step, loss / 2)]
    if epoch == 1:
        return [*records, epoch_record(epoch, step, loss * 0.75)]
    evaluation = val(epoch, step, 0.25 * epoch)
    return [*records, evaluation, epoch_record(epoch, step, loss * 0.75, evaluation["metrics"])]


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


def run(loggers: RunLoggers, epochs: range, **loss: float) -> None:
    for epoch in epochs:
        for record in epoch_records(epoch, **loss):
            loggers.log(record)
        loggers.flush()


# -- jsonl and csv ---------------------------------------------------------------------------------
CSV_AFTER_EPOCH_1 = "epoch,step,seconds,lr,train/loss,train/heatmap\n1,2,1.5,0.01,0.75,0.375\n"
CSV_AFTER_EPOCH_3 = (
    "epoch,step,seconds,lr,train/loss,train/heatmap,AP,AP50\n"
    "1,2,1.5,0.01,0.75,0.375,,\n"
    "2,4,3.0,0.005,0.75,0.375,0.5,0.75\n"
    "3,6,4.5,0.0033333333333333335,0.75,0.375,0.75,1.0\n"
)


def test_jsonl_and_csv_write_todays_format_and_resume_exactly(manager: PluginManager, tmp_path: Path) -> None:
    out = tmp_path / "run"
    loggers = RunLoggers.build(["jsonl", "csv"], builder=Builder(manager), run_dir=out, resume_step=None)
    assert loggers.names == ["jsonl", "csv"]
    run(loggers, range(1, 2))
    assert (out / "results.csv").read_text() == CSV_AFTER_EPOCH_1
    run(loggers, range(2, 4))
    loggers.finish({"steps": 6})
    assert (out / "results.csv").read_text() == CSV_AFTER_EPOCH_3  # header extended by the metrics

    reference = MetricsLog(tmp_path / "reference.jsonl")  # what the trainer wrote before loggers
    for epoch in range(1, 4):
        for record in epoch_records(epoch):
            if record["kind"] != "epoch":
                reference.write(record)
    uninterrupted = {name: (out / name).read_text() for name in ("metrics.jsonl", "results.csv")}
    assert uninterrupted["metrics.jsonl"] == reference.path.read_text()
    assert len(uninterrupted["metrics.jsonl"].splitlines()) == 8

    resumed = RunLoggers.build(["jsonl", "csv"], builder=Builder(manager), run_dir=out, resume_step=2)
    assert (out / "results.csv").read_text() == CSV_AFTER_EPOCH_1  # the header the run had at step 2
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    run(resumed, range(2, 4))
    resumed.finish({"steps": 6})
    assert {name: (out / name).read_text() for name in uninterrupted} == uninterrupted


def test_scalars_flatten_each_record() -> None:
    assert scalars(train(1, 3, 0.5)) == {
        "train/loss/loss": 0.5,
        "train/loss/heatmap": 0.25,
        "train/lr": 0.01,
        "train/images_per_s": 103.0,
    }
    assert scalars(val(2, 4, 0.5)) == {
        "val/AP": 0.5,
        "val/AP50": 0.75,
        "val/AP/cat": 0.25,
        "val/AP50/cat": 0.5,
        "val/objects/cat": 3.0,
        "val/AP/dog": 0.75,
        "val/AP50/dog": 1.0,
        "val/objects/dog": 2.0,
    }  # the confusion matrix is not a scalar
    assert scalars(epoch_record(1, 2, 1.0)) == {
        "epoch/loss/loss": 1.0,
        "epoch/loss/heatmap": 0.5,
        "epoch/seconds": 1.5,
    }


# -- tensorboard -----------------------------------------------------------------------------------
def read_events(folder: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_tensorboard_scalars_images_summary_and_purge_on_resume(
    manager: PluginManager, tmp_path: Path
) -> None:
    from PIL import Image

    out = tmp_path / "run"
    plot = tmp_path / "curves.png"
    Image.new("RGBA", (6, 4), (255, 0, 0, 255)).save(plot)
    loggers = RunLoggers.build(
        [{"type": "tensorboard", "log_dir": "tb"}], builder=Builder(manager), run_dir=out, resume_step=None
    )
    run(loggers, range(1, 4))
    loggers.log_image("plots/curves", plot, step=6)
    loggers.finish({"steps": 6, "best_metric": "AP"})
    events = read_events(out / "tb")
    loss = events.Scalars("train/loss/loss")
    assert [(e.step, e.value) for e in loss] == [(1, 1.0), (2, 0.5), (3, 1.0), (4, 0.5), (5, 1.0), (6, 0.5)]
    assert [(e.step, e.value) for e in events.Scalars("val/AP")] == [(4, 0.5), (6, 0.75)]
    assert [e.value for e in events.Scalars("val/AP/dog")] == [0.75, 0.75]
    assert [e.value for e in events.Scalars("epoch/seconds")] == [1.5, 3.0, 4.5]
    (image,) = events.Images("plots/curves")
    assert (image.step, image.width, image.height) == (6, 6, 4)
    (text,) = events.Tensors("summary/text_summary")
    assert '"best_metric": "AP"' in text.tensor_proto.string_val[0].decode()

    resumed = RunLoggers.build(
        [{"type": "tensorboard", "log_dir": "tb"}], builder=Builder(manager), run_dir=out, resume_step=4
    )
    run(resumed, range(3, 4), loss=3.0)  # epoch 3 again, other values
    resumed.finish({"steps": 6})
    loss = read_events(out / "tb").Scalars("train/loss/loss")
    assert [(e.step, e.value) for e in loss] == [(1, 1.0), (2, 0.5), (3, 1.0), (4, 0.5), (5, 3.0), (6, 1.5)]


def test_tensorboard_without_its_package_is_an_error_before_training(
    manager: PluginManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # not importable, as when not installed
    with pytest.raises(ToolkitError) as info:
        RunLoggers.build(
            ["jsonl", "tensorboard"], builder=Builder(manager), run_dir=tmp_path, resume_step=None
        )
    assert str(info.value) == (
        "the tensorboard logger needs the tensorboard package: pip install 'toolkit[tensorboard]'"
    )
    assert not list(tmp_path.iterdir())  # nothing started


# -- isolation -------------------------------------------------------------------------------------
class FailingLogger:
    """Raises in one method; records what reached it."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.method:
            raise RuntimeError(f"boom in {name}\nsecond line")

    def start(self, run_dir: Path, *, resume_step: int | None) -> None:
        self._call("start")

    def log(self, record: Mapping[str, Any]) -> None:
        self._call("log")

    def log_image(self, tag: str, path: Path, *, step: int) -> None:
        self._call("log_image")

    def flush(self) -> None:
        self._call("flush")

    def finish(self, summary: Mapping[str, Any]) -> None:
        self._call("finish")


BUILT: list[FailingLogger] = []


def failing(method: str = "log") -> FailingLogger:
    """Raises in `method`."""
    BUILT.append(FailingLogger(method))
    return BUILT[-1]


class FailingPlugin:
    @toolkit.hookimpl
    def toolkit_register_loggers(self, registry: toolkit.Registry) -> None:
        registry.register("failing", failing)


@pytest.mark.parametrize("method", ["start", "log", "log_image", "flush", "finish"])
def test_a_failing_logger_is_reported_once_and_the_others_go_on(tmp_path: Path, method: str) -> None:
    manager = PluginManager()
    manager.register_plugin(FailingPlugin(), "failing_plugin")
    specs = [{"type": "failing", "method": method}, "jsonl"]
    with pytest.warns(LoggerWarning) as caught:
        loggers = RunLoggers.build(specs, builder=Builder(manager), run_dir=tmp_path, resume_step=None)
        run(loggers, range(1, 3))
        loggers.log_image("plots/curves", tmp_path / "absent.png", step=4)
        run(loggers, range(3, 4))
        loggers.finish({"steps": 6})
    (warning,) = [w for w in caught if w.category is LoggerWarning]
    assert str(warning.message) == (
        "logger 'failing' from plugin 'failing_plugin' (module FailingPlugin) failed in "
        f"{method}: RuntimeError: boom in {method}; it is dropped for the rest of the run, which goes on"
    )
    assert BUILT[-1].calls[-1] == method and BUILT[-1].calls.count(method) == 1
    assert loggers.names == ["jsonl"]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 8


# -- build and spec errors ---------------------------------------------------------------------------
class NoImagesPlugin:
    @toolkit.hookimpl
    def toolkit_register_loggers(self, registry: toolkit.Registry) -> None:
        def no_images() -> object:
            """Lacks log_image."""
            logger = FailingLogger("none")
            return type("NoImages", (), {"start": logger.start, "log": logger.log, "flush": logger.flush,
                                         "finish": logger.finish})()  # fmt: skip

        registry.register("no_images", no_images)


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (
            "tensorbord",
            ToolkitError,
            "train.loggers.1.type: unknown logger 'tensorbord' (did you mean tensorboard?); available "
            "loggers: csv, jsonl, no_images, tensorboard; list them with 'toolkit plugins'",
        ),
        (
            {"type": "csv", "filenam": "x.csv"},
            ToolkitError,
            "train.loggers.1: logger 'csv' has invalid parameters (filenam: Extra inputs are not "
            "permitted); its parameters: filename",
        ),
        (
            {"type": "csv", "filename": "/tmp/x.csv"},
            ToolkitError,
            "train.loggers.1: logger 'csv' has invalid parameters (filename: '/tmp/x.csv' "
            "must be a path inside the run folder (relative, without '..')); its parameters: filename",
        ),
        (
            "no_images",
            PluginError,
            "logger 'no_images' from plugin 'no_images_plugin' (module NoImagesPlugin) breaks the logger "
            "contract (toolkit.contracts.RunLogger): the object it built lacks log_image; see "
            "docs/plugins.md, section 4",
        ),
    ],
)
def test_build_errors_are_one_line_and_come_before_any_logger_starts(
    tmp_path: Path, spec: Any, error: type[Exception], message: str
) -> None:
    manager = PluginManager()
    manager.register_plugin(NoImagesPlugin(), "no_images_plugin")
    with pytest.raises(error) as info:
        RunLoggers.build(["jsonl", spec], builder=Builder(manager), run_dir=tmp_path, resume_step=None)
    assert str(info.value) == message
    assert not (tmp_path / "metrics.jsonl").exists()


def loggers_of(manager: PluginManager, loggers: Any = None) -> list[dict[str, Any]]:
    train_section = {} if loggers is None else {"loggers": loggers}
    spec = load_spec({"model": MODEL, "train": train_section}, plugins=manager)
    return [logger.model_dump() for logger in spec.train.loggers]


def test_spec_defaults_shorthand_duplicates_and_schema(manager: PluginManager) -> None:
    import jsonschema

    from toolkit.spec import spec_json_schema

    jsonl = {"type": "jsonl", "filename": "metrics.jsonl"}
    csv = {"type": "csv", "filename": "results.csv"}
    assert loggers_of(manager) == [jsonl, csv]
    assert loggers_of(manager, ["csv", "tensorboard"]) == [
        csv,
        {"type": "tensorboard", "log_dir": "tensorboard"},
    ]
    assert loggers_of(manager, ["csv", {"type": "csv", "filename": "b.csv"}]) == [
        csv,
        {"type": "csv", "filename": "b.csv"},
    ]
    assert loggers_of(manager, []) == []
    assert loggers_of(PluginManager(blocked=["toolkit.csv_logger"])) == [jsonl]  # a disabled default
    problems = {
        "duplicate": (["jsonl", "csv", {"type": "csv", "filename": "results.csv"}], "train.loggers: entries "
                      "1 and 2 are the same 'csv' logger and would write the same output; remove one, or "
                      "give one another file (e.g. filename: other.csv)"),
        "unknown": (["jsonl", "tensorbord"], "train.loggers.1.type: unknown logger 'tensorbord' (did you "
                    "mean tensorboard?)"),
        "param": ([{"type": "tensorboard", "logdir": "x"}], "train.loggers.0.logdir: unknown field (did "
                  "you mean log_dir?)"),
    }  # fmt: skip
    for loggers, message in problems.values():
        with pytest.raises(SpecError) as info:
            loggers_of(manager, loggers)
        assert message in str(info.value)
    schema = spec_json_schema(manager)
    model = {**MODEL, "input_size": [64, 64]}
    jsonschema.validate({"model": model, "train": {"loggers": ["jsonl", {"type": "csv"}]}}, schema)
    with pytest.raises(jsonschema.ValidationError, match="tensorbord"):
        jsonschema.validate({"model": model, "train": {"loggers": ["tensorbord"]}}, schema)


# -- a third-party logger, installed through its entry point ---------------------------------------------
ACME = '''
"""A third-party logger: writes the steps it sees to acme.txt; the tracking service fails at epoch 2."""

import toolkit


class AcmeLogger:
    def __init__(self, fail_at_epoch: int) -> None:
        self.fail_at_epoch = fail_at_epoch

    def start(self, run_dir, *, resume_step):
        self.path = run_dir / "acme.txt"
        self.path.write_text("")

    def log(self, record):
        if record["epoch"] == self.fail_at_epoch:
            raise ConnectionError("tracking server unreachable")
        with self.path.open("a") as handle:
            handle.write(f"{record['kind']} {record['step']}\\n")

    def log_image(self, tag, path, *, step):
        pass

    def flush(self):
        pass

    def finish(self, summary):
        with self.path.open("a") as handle:
            handle.write(f"finish {summary['steps']}\\n")


def acme(fail_at_epoch: int = 0) -> AcmeLogger:
    """Steps to acme.txt."""
    return AcmeLogger(fail_at_epoch)


@toolkit.hookimpl
def toolkit_register_loggers(registry):
    registry.register("acme", acme)
'''


@pytest.fixture
def acme_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    site = write_distribution(tmp_path / "site", "acme-logger", {"acme": "acme_logger"}, "2.0")
    (site / "acme_logger.py").write_text(textwrap.dedent(ACME))
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("acme_logger", None)


@pytest.mark.usefixtures("acme_installed")
def test_a_third_party_logger_through_its_entry_point(tmp_path: Path) -> None:
    manager = PluginManager()
    entry = manager.registry("logger").get("acme")
    assert (entry.plugin.source, entry.plugin.distribution, entry.plugin.version) == (
        "entry point",
        "acme-logger",
        "2.0",
    )
    assert loggers_of(manager, ["jsonl", {"type": "acme", "fail_at_epoch": 2}])[1] == {
        "type": "acme",
        "fail_at_epoch": 2,
    }
    out = tmp_path / "run"
    spec = [{"type": "acme"}]
    loggers = RunLoggers.build(spec, builder=Builder(manager), run_dir=out, resume_step=None)
    run(loggers, range(1, 2))
    loggers.finish({"steps": 2})
    assert (out / "acme.txt").read_text() == "train 1\ntrain 2\nepoch 2\nfinish 2\n"

    failing = [{"type": "acme", "fail_at_epoch": 2}, "csv"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loggers = RunLoggers.build(failing, builder=Builder(manager), run_dir=out, resume_step=None)
        run(loggers, range(1, 4))
        loggers.finish({"steps": 6})
    assert [str(w.message) for w in caught if w.category is LoggerWarning] == [
        "logger 'acme' from plugin 'acme' (module acme_logger from acme-logger 2.0) failed in log: "
        "ConnectionError: tracking server unreachable; it is dropped for the rest of the run, which goes on"
    ]
    assert (out / "acme.txt").read_text() == "train 1\ntrain 2\nepoch 2\n"
    assert (out / "results.csv").read_text() == CSV_AFTER_EPOCH_3


# -- files a logger writes -------------------------------------------------------------------------
def with_run_files(files: Any) -> FailingLogger:
    """A logger declaring `files` as its run_files (contracts.WritesRunFiles)."""
    logger = FailingLogger("none")
    logger.run_files = files  # type: ignore[attr-defined]
    return logger


class RunFilesPlugin:
    @toolkit.hookimpl
    def toolkit_register_loggers(self, registry: toolkit.Registry) -> None:
        registry.register("declares", lambda: with_run_files(("notes.txt",)))
        registry.register("bad_files", lambda: with_run_files("notes.txt"))  # a str, not a sequence


def test_a_logger_may_not_replace_what_the_user_had_in_the_folder(tmp_path: Path) -> None:
    manager = PluginManager()
    manager.register_plugin(RunFilesPlugin(), "run_files_plugin")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ToolkitError) as info:
        RunLoggers.build(
            ["jsonl", "declares"], builder=Builder(manager), run_dir=tmp_path, resume_step=None,
            user_entries={"notes.txt"},
        )  # fmt: skip
    assert str(info.value) == (
        f"train.loggers.1 ('declares') would write notes.txt in {tmp_path}, which holds a notes.txt the "
        "toolkit did not write; move it away, give the logger another file name, or choose another "
        "folder with --out"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no logger started
    loggers = RunLoggers.build(["declares"], builder=Builder(manager), run_dir=tmp_path, resume_step=None)
    assert loggers.names == ["declares"]  # the run's own file (no user entries): may be replaced

    with pytest.raises(PluginError) as info:
        RunLoggers.build(["bad_files"], builder=Builder(manager), run_dir=tmp_path, resume_step=None)
    assert "has run_files is 'notes.txt', not a sequence of paths (str)" in str(info.value)
    assert "logger 'bad_files' from plugin 'run_files_plugin'" in str(info.value)
