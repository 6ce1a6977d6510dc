"""Built-in training tasks. Each is a module run as `python -m autopilot.train.tasks.<name> CONFIG RUN_DIR`.

The causal_lm task needs the `lm` extra (transformers, peft, tokenizers, safetensors), which a plain install
leaves out; `missing_extra` tells, before anything starts, whether this interpreter lacks it, and gives the
exact command that installs it.

Usage:
    problem = missing_extra("causal_lm")   # None, or what is missing and the pip command
"""

from __future__ import annotations

from autopilot import extras
from autopilot.errors import MissingDependency

EXTRA_OF_TASK = {"causal_lm": "lm"}


def missing_extra(task: str) -> str | None:
    """What `task` needs that this interpreter cannot import, with the command that installs it; None if nothing."""
    extra = EXTRA_OF_TASK.get(task)
    if extra is None:
        return None
    try:
        extras.require(extra, f"task {task}")
    except MissingDependency as e:
        return str(e)
    return None
