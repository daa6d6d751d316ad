"""Fresh child virtual environments that reuse this environment's packages (torch is never reinstalled).

The child is created without pip (`--without-pip`, no ensurepip): pip, setuptools, torch and the rest
come from the parent's site-packages, which a `.pth` file in the child puts on `sys.path` *after* the
child's own site-packages, so whatever is installed into the child wins.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

#: Environment for pip: offline, quiet, no user config, no version check.
PIP_ENV = {
    "PIP_NO_INDEX": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_INPUT": "1",
    "PIP_CONFIG_FILE": os.devnull,
    "PYTHONNOUSERSITE": "1",
}


def parent_site_packages() -> Path:
    """The running interpreter's site-packages (purelib)."""
    return Path(sysconfig.get_paths()["purelib"])


def child_python(venv: Path) -> Path:
    """The interpreter of the virtual environment at `venv`."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def child_site_packages(python: Path) -> Path:
    """The purelib directory of the interpreter `python` (asked from that interpreter)."""
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
    )
    return Path(out.stdout.strip())


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without PYTHONPATH, TOOLKIT_* and PIP_* variables, plus PIP_ENV and `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"} and not k.startswith(("TOOLKIT_", "PIP_"))
    }
    env.update(PIP_ENV)
    env.update(extra)
    return env


def make_child_venv(path: Path, *, inherit_editable: bool) -> Path:
    """Create a venv at `path` that sees the parent's site-packages; return its python.

    inherit_editable=True: the child runs the parent's `.pth` hooks (`site.addsitedir`), so the
    parent's editable `toolkit` install is importable. False: the parent's site-packages is a plain
    `sys.path` entry, its `.pth` hooks do not run, and `toolkit` must be installed into the child.
    """
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(path)],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    python = child_python(path)
    parent = parent_site_packages()
    # addsitedir processes the parent's .pth files (the editable finder); a plain line does not.
    line = f"import site; site.addsitedir({str(parent)!r})" if inherit_editable else str(parent)
    # "zz" sorts after anything pip installs, so the child's own .pth files are processed first.
    (child_site_packages(python) / "zz_parent_site_packages.pth").write_text(line + "\n", encoding="utf-8")
    return python


def pip_install(python: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`python -m pip install --no-deps --no-build-isolation --quiet ARGS`, offline; assert success."""
    command = [
        str(python),
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        *map(str, args),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert result.returncode == 0, (
        f"pip install failed (exit {result.returncode}): {' '.join(command)}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
    return result
