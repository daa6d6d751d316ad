"""`toolkit env`: the versions and accelerators a bug report needs, and known installation traps.

Nothing here needs a GPU or onnxruntime-gpu: a missing package is reported as such.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import re
import sys
from typing import Any

#: the two onnxruntime distributions install the same `onnxruntime` module over each other
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")
ORT_FIX = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module(name: str) -> tuple[Any, str | None]:
    """(module, None) or (None, why it could not be imported)."""
    try:
        return importlib.import_module(name), None
    except Exception as exc:  # a broken install raises anything from ImportError to OSError
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def _major(version: str | None) -> int | None:
    match = re.match(r"\s*(\d+)", version or "")
    return int(match.group(1)) if match else None


def ort_cuda_version(ort: Any) -> str | None:
    """The CUDA version the installed onnxruntime-gpu build targets, when it says so (its
    `build_and_package_info.cuda_version`, its build info or its distribution's requirements)."""
    try:
        info = importlib.import_module("onnxruntime.capi.build_and_package_info")
        if getattr(info, "cuda_version", None):
            return str(info.cuda_version)
    except Exception:
        pass
    try:
        match = re.search(r"cuda[_ -]?version\s*[=:]\s*(\d+(?:\.\d+)*)", str(ort.get_build_info()), re.I)
        if match:
            return match.group(1)
    except Exception:
        pass
    try:
        requires = importlib.metadata.requires("onnxruntime-gpu") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for requirement in requires:
        match = re.match(r"nvidia-[a-z-]+-cu(\d+)", requirement)
        if match:
            return match.group(1)
    return None


def torch_lines() -> list[str]:
    torch, problem = _module("torch")
    if torch is None:
        return [f"torch: not importable ({problem})"]
    cuda_build = torch.version.cuda or "none (CPU build)"
    lines = [
        f"torch: {torch.__version__} (CUDA build {cuda_build}, cuda available: {torch.cuda.is_available()})"
    ]
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        lines.append(f"GPUs: {', '.join(f'{i}: {name}' for i, name in enumerate(names))}")
    return lines


def onnxruntime_lines() -> list[str]:
    installed = {name: installed_version(name) for name in ORT_DISTRIBUTIONS}
    present = [f"{name} {version}" for name, version in installed.items() if version]
    ort, problem = _module("onnxruntime")
    lines: list[str] = []
    if ort is None:
        lines.append(f"onnxruntime: not importable ({problem}); installed: {', '.join(present) or 'none'}")
    else:
        lines.append(f"onnxruntime: {ort.__version__} (installed: {', '.join(present) or 'unknown'})")
        try:
            providers = ort.get_available_providers()
        except Exception as exc:
            providers = [f"? ({type(exc).__name__}: {exc})"]
        lines.append(f"providers: {', '.join(providers)}")
    if all(installed.values()):
        lines.append(
            "WARNING: both onnxruntime and onnxruntime-gpu are installed; they overwrite each other's "
            f"'onnxruntime' module, so the GPU providers may be missing. Fix: {ORT_FIX}"
        )
    if ort is not None and installed["onnxruntime-gpu"]:
        torch, _ = _module("torch")
        torch_cuda = getattr(getattr(torch, "version", None), "cuda", None)
        ort_cuda = ort_cuda_version(ort)
        if (
            _major(torch_cuda) is not None
            and _major(ort_cuda) is not None
            and _major(torch_cuda) != _major(ort_cuda)
        ):
            lines.append(
                f"NOTE: torch is built for CUDA {torch_cuda} but onnxruntime-gpu for CUDA {ort_cuda}: the "
                "CUDA provider may not find matching libraries; install the onnxruntime-gpu build for CUDA "
                f"{_major(torch_cuda)}"
            )
    return lines


def environment_lines() -> list[str]:
    """One line per fact: python, toolkit, torch (CUDA build, availability, GPUs), torchvision, onnx,
    onnxruntime (distribution, providers) and warnings about known installation problems."""
    import toolkit

    lines = [
        f"python: {sys.version.split()[0]} ({platform.platform()})",
        f"toolkit: {toolkit.__version__}",
        *torch_lines(),
    ]
    for name in ("torchvision", "onnx"):
        module, problem = _module(name)
        lines.append(
            f"{name}: {module.__version__}" if module is not None else f"{name}: not importable ({problem})"
        )
    lines += onnxruntime_lines()
    return lines
