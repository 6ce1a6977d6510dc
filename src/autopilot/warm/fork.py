"""Start built-in tasks from a process that has already imported them (and torch).

A fresh Python process pays about two seconds before a PyTorch task trains its first step: importing torch,
then torch._dynamo on the first optimizer step. So built-in trainers are forked from a process that has
imported them: the project's warm pool (`autopilot.warm.trainers`, shared by all runs), or failing that the
`autopilot train` process itself (`ForkedTrainer`). A forked trainer is a normal trainer in every way that
matters: its own session and process group (killable as a whole), the project root as working directory,
stdout and stderr in train.log, and the task's `main()` with the usual `CONFIG RUN_DIR` arguments. The
forking process imports but never computes, so no thread pool exists to be broken by the fork. One forked
by `autopilot train` dies with it (PR_SET_PDEATHSIG); one forked by the pool dies with the `autopilot train`
that asked for it (the pool watches that connection) but outlives the pool itself.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path

from autopilot.processes import GroupLeader, die_with_parent


def preload(task: str):
    """Import the task module and what its first step will import; return the module."""
    module = importlib.import_module(f"autopilot.train.tasks.{task}")
    if "torch" in sys.modules:
        import torch._dynamo  # noqa: F401  (imported by torch.optim on the first step of every trainer)
    return module


def run_child(module, task: str, args: list[str], cwd: Path, log_fd: int, parent: int | None = None) -> None:
    """In a freshly forked child: become a trainer process (that dies with `parent`, if given), run the task,
    never return."""
    code = 1
    try:
        os.setsid()
        if parent is not None:
            die_with_parent(parent)
        os.chdir(cwd)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.argv = [f"autopilot.train.tasks.{task}", *args]
        module.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class ForkedTrainer(GroupLeader):
    """A trainer forked from this process (and dying with it), with the part of subprocess.Popen's interface
    the supervisor uses; what is left of its process group when it ends is killed."""

    def __init__(self, task: str, args: list[str], cwd: Path, log_fd: int):
        module = preload(task)
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            run_child(module, task, args, cwd, log_fd, parent=parent)
        super().__init__(pid)
