"""What people read and do about a study's code: the log of every patch attempt, one run's patch, a revert.

`log` lists the runs of a code-mode study that tried a patch, each attempt with its outcome and commit, the verdict
of the one that trained, and the code line's moves (branch autopilot/<study>). `show` is one run's patch: its
proposal's code record, verdict and diff. `revert` takes a run's patch back from the code line with a commit of its
own (the code line is what later runs start from) and notes it in the lab journal.

Usage:
    rows = attempt_log(study)
    text = show_run(study, "00004")
    commit = revert_run(study, "00004")
"""

from __future__ import annotations

from autopilot import ledger
from autopilot.code import history
from autopilot.code.repo import open_repo
from autopilot.errors import AutopilotError
from autopilot.journal import record
from autopilot.study import Study


def attempt_log(study: Study) -> list[dict]:
    """One row per attempt of every code run, in run order."""
    rows = []
    verdicts = {e["run_id"]: e["verdict"] for e in record.current_history(study)}
    for run_id in study.paths.run_ids():
        run = study.paths.run(run_id)
        proposal = ledger.read_path(run.proposal) or {}
        rejected = ledger.read_path(run.rejected_proposal) or {}
        code = proposal.get("code") or {}
        attempts = code.get("attempts") or (rejected.get("code") or {}).get("attempts") or []
        for a in attempts:
            trained = code.get("patched") and a["commit"] == code.get("commit")
            rows.append({"run_id": run_id, "attempt": a["attempt"], "outcome": a["outcome"], "commit": a["commit"],
                         "diff_lines": a["diff_lines"], "reason": a["reason"],
                         "verdict": verdicts.get(run_id) if trained else None,
                         "source": code.get("source") if trained else None})
    return rows


def line_events(study: Study) -> list[dict]:
    repo = open_repo(study, create=False)  # reading makes no repository
    if repo is None or not repo.exists(history.branch(study)):
        return []
    return history.events(repo, study)


def show_run(study: Study, run_id: str) -> str:
    run = study.paths.run(run_id)
    proposal = ledger.read_path(run.proposal)
    if proposal is None:
        raise AutopilotError(f"run {run_id} has no proposal.json in {run.dir}")
    code = proposal.get("code")
    if not code:
        raise AutopilotError(f"run {run_id} is not a run of code mode (its proposal names no code)")
    verdict = ledger.read_path(run.verdict)
    lines = [f"run {run_id}: {proposal['policy']}" + (f", {verdict['verdict']}" if verdict else ", not judged yet"),
             f"base {code['base_commit']}", f"commit {code['commit']}" + (" (the code line as it was: no patch)"
                                                                        if not code["patched"] else "")]
    if proposal.get("fallback_from"):
        lines.append(f"fallback: {proposal['fallback_from']['reason']}")
    for a in code["attempts"]:
        lines.append(f"attempt {a['attempt']}: {a['outcome']}" + (f" ({a['commit'][:12]})" if a["commit"] else "")
                     + (f": {a['reason'][:300]}" if a["reason"] else ""))
    lines += [f"flag: {f['message']}" for f in code["flags"]]
    lines += ["", f"rationale: {proposal['rationale']}", f"hypothesis: {proposal['hypothesis']}", ""]
    return "\n".join(lines) + (code["diff"] or "(no diff)\n")


def revert_run(study: Study, run_id: str) -> str:
    """Take the run's patch back from the code line; the new tip."""
    proposal = ledger.read_path(study.paths.run(run_id).proposal) or {}
    code = proposal.get("code") or {}
    if not code.get("patched"):
        raise AutopilotError(f"run {run_id} trained no patch: nothing to revert (autopilot code log lists them)")
    repo = open_repo(study)
    tip = history.revert(repo, study, code["commit"], code["base_commit"],
                         f"{study.name}: revert run {run_id}'s patch ({code['diff_lines']} lines)")
    record.note(study, f"Code line: run {run_id}'s patch reverted",
                f"The code line (branch autopilot/{study.name}) is now {tip[:12]}: run {run_id}'s patch to "
                f"{', '.join(code['files'])} was taken back. Later runs start from it; the optimizer models only the "
                "runs on this code version.")
    return tip
