"""Checks of a patched tree before it may train: on CPU, fast, each in the sandbox with a time limit.

In order, stopping at the first failure: the patch applied (done before: `patch.apply_diff`); every changed Python
file compiles (compiled here, never run); the study's own test command passes in the tree (`code_mode.test_command`);
a smoke run of the study's trainer from the tree trains `code_mode.smoke_steps` steps (config.json's `max_steps`) and
logs a finite loss. A failure's tail (the compiler's message, the test output, the trainer's traceback) is what the
worker gets back in the repair loop. Every check's log stays in the attempt's folder.

Usage:
    result = run_checks(study, run, k, tree, config)     # CheckResult(ok, failed, tail, checks=[...])
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autopilot import fsio
from autopilot.code import checkout, sandbox
from autopilot.paths import RunPaths
from autopilot.study import Study

log = logging.getLogger(__name__)

TAIL_CHARS = 2500  # of a failed check's output, sent back to the worker


@dataclass
class CheckResult:
    ok: bool = True
    failed: str | None = None  # the check that failed: compile | tests | smoke
    tail: str = ""
    checks: list[dict] = field(default_factory=list)  # name, ok, seconds, detail
    sandbox: dict = field(default_factory=dict)  # the sandbox reports, by check

    def fail(self, name: str, tail: str, seconds: float = 0.0) -> CheckResult:
        self.ok, self.failed, self.tail = False, name, tail[-TAIL_CHARS:]
        self.checks.append({"name": name, "ok": False, "seconds": seconds, "detail": tail[-600:]})
        return self


def compile_errors(tree: Path, paths: list[str]) -> str:
    """The compiler's message for each changed Python file that does not compile (nothing is executed)."""
    errors = []
    for rel in paths:
        path = tree / rel
        if path.suffix != ".py" or not path.is_file():
            continue
        try:
            compile(path.read_bytes(), rel, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:
            line = getattr(e, "text", None) or ""
            errors.append(f'  File "{rel}", line {getattr(e, "lineno", "?")}\n    {line.rstrip()}\n'
                          f"{type(e).__name__}: {getattr(e, 'msg', None) or e}")
    return "\n".join(errors)


def check_policy(study: Study, folder: Path, tree: Path) -> sandbox.Policy:
    code = study.settings.code_mode
    folder.mkdir(parents=True, exist_ok=True)
    return sandbox.Policy(root=study.project.root.resolve(), writable=(folder.resolve(),),
                          sealed=checkout.sealed_paths(study), network=False, memory_mb=code.memory_mb,
                          env_names=code.env, set_env=(("PYTHONPATH", checkout.python_path(tree)),
                                                       ("CUDA_VISIBLE_DEVICES", "")),  # checks run on CPU
                          strict=code.strict_sandbox)


def run_checks(study: Study, run: RunPaths, k: int, tree: Path, config: dict, changed: list[str],
               trainer_argv: Callable[[str, str], list[str]]) -> CheckResult:
    """Compile, tests, smoke run of attempt `k`'s tree; stops at the first failure. `trainer_argv(config_path,
    run_dir)` is the study's trainer command (autopilot.train.adapter.trainer_argv)."""
    result = CheckResult()
    errors = compile_errors(tree, changed)
    if errors:
        return result.fail("compile", errors)
    result.checks.append({"name": "compile", "ok": True, "seconds": 0.0, "detail": f"{len(changed)} file(s)"})
    folder = run.attempt_dir(k)
    code = study.settings.code_mode
    if code.test_command:
        writable = folder / "tests"
        policy = check_policy(study, writable, tree)
        policy = sandbox.Policy(**{**policy.__dict__, "writable": (writable.resolve(), tree.resolve())})
        out = sandbox.run(list(code.test_command), policy, "tests", tree, code.check_seconds, folder / "tests.log")
        result.sandbox["tests"] = out.report
        if not out.ok:
            return result.fail("tests", f"$ {' '.join(code.test_command)}  (exit {out.returncode})\n{out.output}",
                               out.seconds)
        result.checks.append({"name": "tests", "ok": True, "seconds": out.seconds, "detail": "exit 0"})
    return smoke_run(study, folder / "smoke", tree, config, result, trainer_argv)


def smoke_config(study: Study, config: dict, smoke: RunPaths) -> dict:
    """The run's config for a few steps on CPU, writing only into the smoke folder."""
    root = study.project.root
    rel = str(smoke.dir.relative_to(root))
    return {**config, "max_steps": study.settings.code_mode.smoke_steps,
            "max_seconds": study.settings.code_mode.check_seconds,
            "paths": {**config["paths"], "run_dir": rel, "status_file": f"{rel}/status.json"}}


def smoke_run(study: Study, folder: Path, tree: Path, config: dict, result: CheckResult,
              trainer_argv: Callable[[str, str], list[str]]) -> CheckResult:
    smoke = RunPaths(folder)
    fsio.atomic_write_json(smoke.config, smoke_config(study, config, smoke))
    root = study.project.root
    argv = checkout.in_checkout(trainer_argv(str(smoke.config.relative_to(root)), str(smoke.dir.relative_to(root))),
                                tree, root)
    limit = study.settings.code_mode.check_seconds
    out = sandbox.run(argv, check_policy(study, folder, tree), "smoke run", root, limit, smoke.train_log)
    result.sandbox["smoke"] = out.report
    losses = finite_losses(smoke)
    if out.oom:
        return result.fail("smoke", f"the smoke run went over code_mode.memory_mb={study.settings.code_mode.memory_mb}"
                                    f" MiB and was killed\n{out.output}", out.seconds)
    if not out.ok:
        why = "was killed at the time limit" if out.returncode is None else f"exited with status {out.returncode}"
        return result.fail("smoke", f"the smoke run of {study.settings.code_mode.smoke_steps} steps {why}:\n"
                                    f"{out.output}", out.seconds)
    if not losses:
        return result.fail("smoke", "the smoke run exited 0 but logged no finite loss (run.step(step, loss=...)) in "
                                    f"metrics.jsonl:\n{out.output}", out.seconds)
    result.checks.append({"name": "smoke", "ok": True, "seconds": out.seconds,
                          "detail": f"{len(losses)} step(s), last loss {losses[-1]:.4g}"})
    return result


def finite_losses(run: RunPaths) -> list[float]:
    """The loss values a smoke run logged; any non-finite one makes the list empty."""
    if not run.metrics.exists():
        return []
    losses = [r["loss"] for r in fsio.iter_jsonl(run.metrics) if isinstance(r.get("loss"), (int, float))]
    return losses if all(math.isfinite(v) for v in losses) else []
