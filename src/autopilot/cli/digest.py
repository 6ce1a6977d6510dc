"""`autopilot digest`: what a study did since a time, for the morning read or a daily message."""

from __future__ import annotations

import json

import click

from autopilot.cli import domain_errors, main, pass_project
from autopilot.cli.loop import resolve_study, study_option
from autopilot.paths import Project


@main.command()
@study_option
@click.option("--since", default="12h", show_default=True,
              help="A duration before now (30m, 12h, 2d, 1w) or a time (2026-01-31T22:00, UTC unless it says).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_project
@domain_errors
def digest(project: Project, study_name: str | None, since: str, as_json: bool) -> None:
    """Print what happened: runs and verdicts, promotions with their held-out test scores, holds, compute spent.

    Pipe it to a chat (`autopilot digest | curl -d @- ...`) from cron for a daily message.
    """
    from autopilot.ops.digest import digest as make
    from autopilot.ops.digest import parse_since, render

    d = make(resolve_study(project, study_name), parse_since(since))
    click.echo(json.dumps(d, indent=2) if as_json else render(d))
