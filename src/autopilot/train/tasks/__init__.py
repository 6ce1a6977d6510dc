"""Built-in training tasks. Each is a module run as `python -m autopilot.train.tasks.<name> CONFIG RUN_DIR`.

The causal_lm task needs the `lm` extra (transformers, peft, tokenizers, safetensors), which a plain install
leaves out; `missing_extra` tells, before anything starts, whether this interpreter lacks it, and gives the
exact command that installs it.

Usage:
    problem = missing_extra("causal_lm")   # None, or what is missing and the pip command
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shlex
import sys

EXTRA_OF_TASK = {"causal_lm": "lm"}
MODULES_OF_EXTRA = {"lm": ("transformers", "peft", "tokenizers", "safetensors")}


def missing_extra(task: str) -> str | None:
    """What `task` needs that this interpreter cannot import, with the command that installs it; None if nothing."""
    extra = EXTRA_OF_TASK.get(task)
    missing = [name for name in MODULES_OF_EXTRA.get(extra, ()) if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (f"task {task} needs the `{extra}` extra of autopilot, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed for {sys.executable}; install it with:\n"
            f"    {install_command(extra)}")


def install_command(extra: str) -> str:
    """The pip command that installs the packages of an extra of autopilot into this interpreter."""
    marker = f'extra == "{extra}"'
    wanted = [r.split(";")[0].strip() for r in importlib.metadata.requires("autopilot") or [] if marker in r]
    return shlex.join([sys.executable, "-m", "pip", "install", *wanted])
