"""The sealed evaluator: the metric of a code-mode run, computed where the patched code cannot reach it.

After a trainer of a code-mode run has ended (its whole sandbox with it), the study's evaluator command
(`code_mode.evaluator.command`) runs in a fresh process from the pristine tree: the run's base commit, exported anew
from git for this evaluation, so nothing the trainer did to its own checkout counts. It loads the weights the trainer
saved in the seed's folder and writes {output} (schemas/evaluation.schema.yaml). It runs sandboxed as well (no
network, the project read-only, only its output folder writable: it reads files a patched process wrote), but it
sees the sealed paths, which no patched process does. Its metric and per-example scores replace the trainer's in
trainer_summary.json; `evaluation` records the evaluator's code hash (its files' blobs at that commit), the commit
and what the trainer claimed.

Usage:
    summary = evaluate_seed(study, seed_run, base_commit, summary)
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import tarfile
import tempfile
from pathlib import Path

from autopilot import fsio, schemas
from autopilot.code import checkout, diffguard, sandbox
from autopilot.code.globs import matches
from autopilot.code.repo import CodeRepo, open_repo
from autopilot.errors import AutopilotError
from autopilot.paths import RunPaths
from autopilot.study import Study

log = logging.getLogger(__name__)

OUTPUT = "evaluation.json"


def export_tree(repo: CodeRepo, commit: str, dest: Path) -> Path:
    """The project folder of `commit`, extracted from git into `dest` (nothing of a checkout is used)."""
    rev = f"{commit}:{repo.prefix.rstrip('/')}" if repo.prefix else commit
    data = repo.git_bytes("archive", "--format=tar", rev)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def code_hash(repo: CodeRepo, commit: str, files: tuple[str, ...]) -> tuple[str, list[str]]:
    """sha256 over `path blob` of every evaluator file at `commit`, and the files it covers."""
    listing = repo.git("ls-tree", "-r", "--full-tree", commit).splitlines()
    blobs = {}
    for line in listing:
        meta, path = line.split("\t", 1)
        rel = repo.to_project(path)
        if rel is not None and matches(rel, files):
            blobs[rel] = meta.split()[2]
    text = "\n".join(f"{p} {b}" for p, b in sorted(blobs.items()))
    return hashlib.sha256(text.encode()).hexdigest(), sorted(blobs)


def evaluator_policy(study: Study, out_dir: Path, tree: Path) -> sandbox.Policy:
    code = study.settings.code_mode
    return sandbox.Policy(root=study.project.root.resolve(), writable=(out_dir.resolve(),), network=False,
                          memory_mb=code.memory_mb, env_names=code.env,
                          set_env=(("PYTHONPATH", checkout.python_path(tree)),), strict=code.strict_sandbox)


def evaluate_seed(study: Study, seed_run: RunPaths, base_commit: str, summary: dict) -> dict:
    """`summary` with the sealed evaluator's metric; `failed` with its error tail when it could not score."""
    repo = open_repo(study)
    evaluator = study.settings.code_mode.evaluator
    files = diffguard.evaluator_files(study)
    digest, covered = code_hash(repo, base_commit, files)
    with tempfile.TemporaryDirectory(prefix="autopilot-eval-") as tmp:
        tree = export_tree(repo, base_commit, Path(tmp) / "tree")
        out_dir = Path(tmp) / "out"
        out_dir.mkdir()
        root = study.project.root
        argv = [a.replace("{run_dir}", str(seed_run.dir.relative_to(root))).replace("{output}", str(out_dir / OUTPUT))
                for a in evaluator.command]
        argv = checkout.in_checkout(argv, tree, root)
        result = sandbox.run(argv, evaluator_policy(study, out_dir, tree), "evaluator", root,
                             evaluator.timeout_seconds, seed_run.dir / "evaluate.log")
        output = read_output(out_dir / OUTPUT) if result.ok else None
    record = {"code_hash": digest, "commit": base_commit, "files": covered, "command": list(evaluator.command),
              "seconds": result.seconds, "trainer_reported": summary["metric"]["value"]}
    if output is None or isinstance(output, str):
        why = output or (f"exited with status {result.returncode}" if result.returncode is not None
                         else f"was killed after code_mode.evaluator.timeout_seconds={evaluator.timeout_seconds:g}")
        return {**summary, "status": "failed", "metric": {**summary["metric"], "value": None}, "per_example": None,
                "evaluation": record, "error": f"the sealed evaluator {why}:\n{result.output[-1500:]}"}
    fsio.atomic_write_json(seed_run.evaluation, output)
    goal = study.settings.metric.goal
    per = output.get("per_example")
    return {**summary, "metric": {**summary["metric"], "value": output["metric"]},
            "per_example": None if per is None else {"name": "score", "goal": goal, "values": per},
            "metrics": {**summary.get("metrics", {}), **output.get("metrics", {})}, "evaluation": record}


def read_output(path: Path) -> dict | str:
    """The evaluator's output, or why it cannot be used."""
    if not path.exists():
        return f"exited 0 without writing {OUTPUT}"
    try:
        output = fsio.read_json(path)
        schemas.validate(output, "evaluation", what=f"the evaluator's {OUTPUT}")
    except AutopilotError as e:
        return str(e)
    except ValueError as e:
        return f"wrote an {OUTPUT} that is not JSON: {e}"
    if not math.isfinite(output["metric"]) or not all(math.isfinite(v) for v in output.get("per_example") or []):
        return "reported a metric or per-example score that is not finite"
    return output
