"""`toolkit plugins`, `schema`, `validate`, `build` and `env`: what is installed and what a spec
builds, without training (torch-free but for `build`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from toolkit.build import build_model
from toolkit.env_report import environment_lines
from toolkit.kinds import BACKBONE
from toolkit.outputs import check_output_file
from toolkit.spec import load_spec, merged_spec_text, spec_json_schema
from toolkit.spec.derived import component_model
from toolkit.spec.load import declared_input_multiple
from toolkit.table import format_table

#: `toolkit plugins` names the plugins whose module takes at least this long to import
SLOW_IMPORT_SECONDS = 1.0


def _count(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


def _params_schema(entry: Any) -> dict[str, Any]:
    """The JSON Schema of a component's parameters as a spec validates them: the plugin's own and
    the core's (a backbone's `pretrained` also takes a weights file), without `type`."""

    schema = component_model(entry).model_json_schema()
    schema.get("properties", {}).pop("type", None)
    schema["required"] = [name for name in schema.get("required", []) if name != "type"]
    if not schema["required"]:
        del schema["required"]
    return schema


def plugins(args: argparse.Namespace) -> int:
    """`toolkit plugins [--json]`: the plugins (source, status, import time) and their components."""
    manager = args.manager
    plugins = [
        {
            "name": info.name,
            "module": info.module,
            "source": info.source,
            "distribution": info.distribution,
            "version": info.version,
            "status": "loaded",
            "error": None,
            "import_seconds": info.import_seconds,
            "imported_torch": info.imported_torch,
        }
        for info in manager.loaded
    ] + [
        {
            "name": f.info.name,
            "module": f.info.module,
            "source": f.info.source,
            "distribution": f.info.distribution,
            "version": f.info.version,
            "status": f"failed to {f.stage}",
            "error": f.error,
            "import_seconds": None,
            "imported_torch": False,
        }
        for f in manager.failed
    ]
    components = {
        kind: [
            {
                "name": entry.name,
                "plugin": entry.plugin.name,
                "distribution": entry.plugin.distribution,
                "version": entry.plugin.version,
                "description": entry.description,
                "params": _params_schema(entry),
            }
            for entry in registry
        ]
        for kind, registry in manager.registries.items()
    }
    if args.json:
        print(json.dumps({"plugins": plugins, "components": components}, indent=2))
        return 0
    print(
        format_table(
            ["plugin", "source", "distribution", "status", "import (s)"],
            [
                [
                    p["name"],
                    p["source"],
                    f"{p['distribution'] or '-'} {p['version'] or ''}".strip(),
                    p["status"],
                    "-" if p["import_seconds"] is None else f"{p['import_seconds']:.2f}",
                ]
                for p in plugins
            ],
        )
    )
    for failure in manager.failed:
        print(f"  {failure.info.name}: {failure.error}")
    for info in manager.loaded:
        if info.import_seconds is not None and info.import_seconds >= SLOW_IMPORT_SECONDS:
            why = " because it imports torch at module level" if info.imported_torch else ""
            print(
                f"  {info.name}: importing it takes {info.import_seconds:.1f} s{why}, on every command; "
                "import heavy modules inside the component's factory instead"
            )
    print()
    rows = [
        [kind, c["name"], c["plugin"], c["description"]] for kind, items in components.items() for c in items
    ]
    print(format_table(["kind", "name", "plugin", "description"], rows))
    return 0


def schema(args: argparse.Namespace) -> int:
    """`toolkit schema [-o FILE]`: the JSON Schema of spec files, installed plugins included."""
    if args.output:
        check_output_file(args.output, "-o", example="spec.schema.json")
    text = json.dumps(spec_json_schema(args.manager), indent=2)
    if args.output:
        from pathlib import Path

        Path(args.output).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def validate(args: argparse.Namespace) -> int:
    """`toolkit validate SPEC [--print]`: the spec checked against the installed plugins, summarized."""
    if args.print_spec:  # what validation sees; the summary follows as a YAML comment
        print(merged_spec_text(args.spec, args.overrides), end="")
    spec = load_spec(args.spec, args.overrides, plugins=args.manager)
    model = spec.model
    backbone = args.manager.registry(BACKBONE.name).get(model.backbone.type)
    if backbone.static_input_multiple(model.backbone) is None:  # not declared: build to read it
        multiple = build_model(spec, plugins=args.manager).input_multiple
    else:
        multiple = declared_input_multiple(spec, args.manager.registries)[0]  # type: ignore[index]
    height, width = model.input_size
    print(
        f"{'# ' if args.print_spec else ''}{args.spec}: valid ({model.backbone.type} + {model.head.type}, "
        f"{_count(model.num_classes, 'class', 'classes')}, input {height}x{width}, multiple of {multiple})"
    )
    return 0


def build(args: argparse.Namespace) -> int:
    """`toolkit build SPEC`: the spec's model built, with its parameters and output shapes."""
    from toolkit.summary import format_model_summary, summarize

    spec = load_spec(args.spec, args.overrides, plugins=args.manager)
    model = build_model(spec, plugins=args.manager)
    parts = summarize(model, spec.model.backbone.type, spec.model.head.type)
    print(f"{args.spec}: {model.task.name} model, {_count(len(model.class_names), 'class', 'classes')}")
    print(format_model_summary(parts, spec.model.input_size))
    return 0


def env(args: argparse.Namespace) -> int:
    """`toolkit env`: versions of torch, CUDA, onnxruntime and its providers, the GPUs."""
    for line in environment_lines():
        print(line)
    return 0
