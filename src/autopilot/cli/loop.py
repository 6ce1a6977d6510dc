"""Commands of the loop: propose, guard, train, judge, journal (one per workflow rule), and results."""

from __future__ import annotations

from pathlib import Path

import click

from autopilot.cli import domain_errors, main, pass_project
from autopilot.paths import Project

study_option = click.option(
    "--study", "study_name", envvar="AUTOPILOT_STUDY", help="Study name (folder under runs/). Default: config/config.yaml's."
)


def resolve_study(project: Project, name: str | None):
    from autopilot.study import Study

    if name:
        return Study.from_study_dir(project, name)
    return Study.load(project, project.root / "config" / "config.yaml")
