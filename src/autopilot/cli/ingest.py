"""Commands of ingest: validate, ingest, and the queue group (add, list, status, retry)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import click

from autopilot.cli import domain_errors, main, pass_project
from autopilot.cli.loop import resolve_study, study_option
from autopilot.paths import PRIORITIES, Project

LEVELS = click.Choice(["quick", "standard", "deep"])
SHOWN = 20  # findings printed; --json and the reason files hold up to 50


def load_settings(project: Project, study_name: str | None, level: str | None = None):
    """The study's ingest settings; outside a project (no config/config.yaml) the schema's defaults."""
    from autopilot.ingest.checks import Level, Settings

    if study_name is None and not project.default_config.exists():
        settings = Settings.from_config(None, project.root)
    else:
        settings = Settings.from_config(resolve_study(project, study_name).config.get("ingest"), project.root)
    return dataclasses.replace(settings, level=Level.parse(level)) if level else settings


def echo_scan(scan, as_json: bool, **extra) -> None:
    if as_json:
        click.echo(json.dumps({**extra, **scan.as_dict()}, ensure_ascii=False))
        return
    click.echo(scan.headline())
    for finding in [*scan.errors, *scan.warnings][:SHOWN]:
        click.echo(f"  {finding}")
    if scan.n_errors + scan.n_warnings > SHOWN:
        totals = ", ".join(f"{k} {n}" for k, n in sorted(scan.totals.items()))
        click.echo(f"  ... {scan.n_errors + scan.n_warnings - SHOWN} more (totals: {totals})")
    for note in scan.skipped:
        click.echo(f"  skipped: {note}")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--spec", help="Dataset spec (schemas/datasets/<spec>.schema.yaml). Default: FILE's sidecar, "
                             "else the study's ingest.default_spec.")
@click.option("--level", type=LEVELS, help="How deep to check. Default: the study's ingest.level.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON object.")
@study_option
@pass_project
@domain_errors
@click.pass_context
def validate(ctx: click.Context, project: Project, file: Path, spec: str | None, level: str | None,
             as_json: bool, study_name: str | None) -> None:
    """Check a dataset file against its spec, line by line, without queueing it.

    Every finding names its line, field and what to do. The spec comes from --spec, else FILE's sidecar
    (<name>.meta.yaml), else the study's ingest.default_spec. Exit status: 0 accepted, 1 rejected, 2 usage
    error (including an unknown spec or none at all).
    """
    from autopilot.ingest import sidecar
    from autopilot.ingest.inbox import check_file, make_plan, sidecar_of

    settings = load_settings(project, study_name, level)
    side = sidecar_of(file)
    plan = make_plan(sidecar.read(side) if os.path.lexists(side) else None, settings, spec)
    for kind, message in plan.problems:
        if kind in ("no_spec", "unknown_spec"):
            raise click.BadParameter(message, param_hint="--spec")
        raise click.ClickException(message)
    scan = check_file(file, plan.spec, settings)
    echo_scan(scan, as_json, file=str(file))
    ctx.exit(0 if scan.accepted else 1)


@main.command(name="ingest")
@study_option
@pass_project
@domain_errors
def ingest_cmd(project: Project, study_name: str | None) -> None:
    """Take the settled files of inbox/ into the queue, or into queue/failed/ with a reason; print a summary.

    Run by the workflow's `ingest` rule at the start of every invocation, and safe to run by hand or from
    cron at the same time (one ingest at a time; the second waits). Files still being written (dotfiles,
    *.tmp, *.part, modified within ingest.settle_seconds) are left for the next run.
    """
    from autopilot.ingest.inbox import ingest_inbox, summarize

    click.echo(summarize(ingest_inbox(project, load_settings(project, study_name))))


@main.group(name="queue")
def queue_group() -> None:
    """Look at and manage the dataset queue: queue/{high,normal,low}/, processing/, done/, failed/, quarantine/."""


@queue_group.command(name="add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--priority", type=click.Choice(PRIORITIES), help="Queue to join. Default: FILE's sidecar, "
                                                                "else the study's ingest.default_priority.")
@click.option("--spec", help="Dataset spec. Default: FILE's sidecar, else the study's ingest.default_spec.")
@study_option
@pass_project
@domain_errors
@click.pass_context
def queue_add(ctx: click.Context, project: Project, file: Path, priority: str | None, spec: str | None,
              study_name: str | None) -> None:
    """Check FILE and queue a byte-identical copy of it (FILE itself stays where it is).

    A rejected file is not queued: its findings are printed and the exit status is 1.
    """
    from autopilot.ingest.inbox import add_file

    outcome, scan = add_file(project, file, load_settings(project, study_name), spec=spec, priority=priority)
    if outcome.entry is not None:
        click.echo(f"queued {file} as {outcome.entry.relative_to(project.root)}: {outcome.detail}")
        return
    echo_scan(scan, as_json=False)
    ctx.exit(1)


@queue_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@pass_project
@domain_errors
def queue_list(project: Project, as_json: bool) -> None:
    """List the entries waiting (high, normal, low, oldest first), in processing, quarantined and failed (with why)."""
    from autopilot.ingest import queue

    rows = queue.describe(project)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            detail = row.get("reason") or f"{row['records']} records, {row['bytes']} bytes"
            click.echo(f"{row['folder']:<10} {row['entry']}  {row['spec'] or '-'}  {detail}")
    if not rows and not as_json:
        click.echo("the queue is empty")


@queue_group.command(name="status")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
@pass_project
@domain_errors
def queue_status(project: Project, as_json: bool) -> None:
    """Count the files in the inbox and the entries in each queue folder."""
    from autopilot.ingest import queue

    found = queue.counts(project)
    if as_json:
        click.echo(json.dumps(found))
    else:
        click.echo("  ".join(f"{folder}: {n}" for folder, n in found.items()))


@queue_group.command(name="retry")
@click.argument("name")
@pass_project
@domain_errors
def queue_retry(project: Project, name: str) -> None:
    """Move the failed entry NAME back into the inbox, to be ingested again on the next run.

    Its reason is kept, as history, in queue/failed/retried/ (and listed in the next report or reason).
    Fix the file, or drop a corrected <name>.meta.yaml beside it, before the next ingest. A quarantined entry
    (continual mode: its run regressed the champion) goes straight back into its queue, in its place; its
    evidence is kept in queue/quarantine/retried/.
    """
    from autopilot.ingest import queue

    target = queue.retry(project, name)
    click.echo(f"{name} -> {target.relative_to(project.root)}")
