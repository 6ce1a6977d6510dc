"""Commands of code mode: `autopilot code log | show RUN | revert RUN`, and `autopilot approve | reject RUN`."""

from __future__ import annotations

import json

import click

from autopilot.cli import domain_errors, main, pass_project
from autopilot.cli.loop import resolve_study, study_option
from autopilot.paths import Project

run_argument = click.argument("run_id", metavar="RUN")


@main.group()
def code() -> None:
    """The study's code in code mode: every patch attempt, one run's patch, a revert of the code line.

    Each attempt is a commit on the branch autopilot/<study> of the project's git repository (or of
    runs/<study>/code.git when the project is not a git checkout): `git log autopilot/<study>` shows them all,
    `git log --first-parent autopilot/<study>` the code line itself.
    """


@code.command(name="log")
@study_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@pass_project
@domain_errors
def log_cmd(project: Project, study_name: str | None, as_json: bool) -> None:
    """List every patch attempt (run, attempt, outcome, commit, lines, verdict) and the code line's moves."""
    from autopilot.ops.code_review import attempt_log, line_events

    study = resolve_study(project, study_name)
    rows, events = attempt_log(study), line_events(study)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo(f"no patch attempts in study {study.name} yet")
    for r in rows:
        verdict = f"  -> {r['verdict']}" if r["verdict"] else ""
        commit = r["commit"][:12] if r["commit"] else "-" * 12
        lines = "" if r["diff_lines"] is None else f"{r['diff_lines']:4d} lines"
        reason = f"  {r['reason'].splitlines()[0][:90]}" if r["reason"] and r["outcome"] != "accepted" else ""
        click.echo(f"{r['run_id']}/{r['attempt']}  {r['outcome']:<15} {commit}  {lines:<10}{verdict}{reason}")
    moves = [e for e in events if not e["subject"].startswith("record attempt")]
    if moves:
        click.echo(f"\ncode line (branch autopilot/{study.name}, newest first):")
        for e in moves:
            click.echo(f"  {e['commit'][:12]}  {e['time']}  {e['subject']}")


@code.command()
@study_option
@run_argument
@pass_project
@domain_errors
def show(project: Project, study_name: str | None, run_id: str) -> None:
    """Show a run's patch: its attempts, flags, rationale, hypothesis, verdict and diff."""
    from autopilot.ops.code_review import show_run

    click.echo(show_run(resolve_study(project, study_name), run_id), nl=False)


@code.command()
@study_option
@run_argument
@pass_project
@domain_errors
def revert(project: Project, study_name: str | None, run_id: str) -> None:
    """Take a run's patch back from the code line (a commit of its own); later runs start without it.

    The lab journal notes it. The runs already finished are not touched.
    """
    from autopilot.ops.code_review import revert_run

    tip = revert_run(resolve_study(project, study_name), run_id)
    click.echo(f"run {run_id}'s patch reverted: the code line is now {tip[:12]}")


@main.command()
@study_option
@run_argument
@click.option("--note", help="Why (kept with the decision).")
@pass_project
@domain_errors
def approve(project: Project, study_name: str | None, run_id: str, note: str | None) -> None:
    """Approve the patch of RUN waiting in runs/<study>/pending/ (code_mode.approval: required).

    The next code run trains it, applied to the code line as it is then and checked again.
    """
    from autopilot.code import approval

    record = approval.approve(resolve_study(project, study_name), run_id, note)
    click.echo(f"run {run_id}'s patch approved by {record['decided_by']}: the next code run trains it")


@main.command()
@study_option
@run_argument
@click.option("--note", help="Why (kept with the decision).")
@pass_project
@domain_errors
def reject(project: Project, study_name: str | None, run_id: str, note: str | None) -> None:
    """Reject the patch of RUN waiting in runs/<study>/pending/; it never trains (its record stays)."""
    from autopilot.code import approval

    record = approval.reject(resolve_study(project, study_name), run_id, note)
    click.echo(f"run {run_id}'s patch rejected by {record['decided_by']}")
