"""Optional extras of autopilot: whether one is installed, and the exact command that installs it.

The requirements come from the package's own metadata (pyproject.toml's extras), so no pin is written twice; the
modules each extra provides are listed here, since that is what an interpreter can be asked about.

Usage:
    problem = missing("lm")                    # None, or which modules this interpreter lacks
    require("mlflow", "autopilot export mlflow")   # MissingDependency with the pip command
    install_command("lm")                      # `/path/to/python -m pip install 'transformers>=4.45' ...`
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shlex
import subprocess
import sys

from autopilot.errors import MissingDependency

log = logging.getLogger(__name__)

MODULES = {  # extra -> the modules it provides
    "lm": ("transformers", "peft", "tokenizers", "safetensors"),
    "tensorboard": ("tensorboard",),
    "hydra": ("hydra",),
    "mlflow": ("mlflow",),
}
PROBE_SECONDS = 30.0


def requirements(extra: str) -> list[str]:
    """The requirements of an extra as the installed package declares them (`peft>=0.12`, ...)."""
    marker = f'extra == "{extra}"'
    return [r.split(";")[0].strip() for r in importlib.metadata.requires("autopilot") or [] if marker in r]


def install_command(extra: str, python: str = sys.executable) -> str:
    """The pip command that installs the extra's packages into `python`."""
    return shlex.join([python, "-m", "pip", "install", *requirements(extra)])


def missing(extra: str, python: str | None = None) -> list[str]:
    """The extra's modules that `python` (None: this interpreter) cannot import."""
    return [m for m in MODULES[extra] if not importable(m, python)]


def require(extra: str, needed_by: str, python: str | None = None) -> None:
    """MissingDependency, naming who needs it and the install command, unless `python` has the whole extra."""
    lacking = missing(extra, python)
    if lacking:
        python = python or sys.executable
        raise MissingDependency(
            f"{needed_by} needs the `{extra}` extra of autopilot, and {', '.join(lacking)} "
            f"{'is' if len(lacking) == 1 else 'are'} not installed for {python}; install it with:\n"
            f"    {install_command(extra, python)}")


def importable(module: str, python: str | None = None) -> bool:
    """Whether `python` (None: this interpreter) can import `module`; a python that cannot be asked counts as yes."""
    # not resolved: a venv's python is a symlink to the base interpreter, whose packages differ
    if python is None or os.path.abspath(python) == os.path.abspath(sys.executable):
        return importlib.util.find_spec(module) is not None
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=PROBE_SECONDS).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("could not ask %s whether it has %s (%s); not checked", python, module, e)
        return True
