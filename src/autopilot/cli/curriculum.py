"""Commands of the curriculum: show its state, generate a skill's data by hand."""

from __future__ import annotations

import json
from pathlib import Path

import click

from autopilot.cli import domain_errors, main, pass_project
from autopilot.cli.loop import resolve_study, study_option
from autopilot.paths import Project

SKILL_NAMES = click.Choice(["binary", "syllo"])


@main.group(name="curriculum")
def curriculum_group() -> None:
    """The curriculum of a continual study: skills with levels, and generated data (curriculum: in the config)."""


@curriculum_group.command(name="show")
@click.option("--json", "as_json", is_flag=True, help="Print runs/<study>/curriculum.json's summary as JSON.")
@study_option
@pass_project
@domain_errors
def show(project: Project, study_name: str | None, as_json: bool) -> None:
    """Per skill: its level, its last evaluations, what moving up needs, the levels it forgets, when it advanced."""
    from autopilot.curriculum import state

    study = resolve_study(project, study_name)
    rows = state.summary(study)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"study {study.name} has no curriculum (curriculum.enabled is false)")
    for skill, row in rows.items():
        click.echo(f"{skill}: {state.describe(row)}")
        for t in row["trend"]:
            click.echo(f"  run {t['run_id']}  level {t['level']}  {t['accuracy']:.2f}")
        for a in row["advances"]:
            click.echo(f"  advanced {a['from']} -> {a['to']} after run {a['run_id']} "
                       f"({', '.join(f'{x:.2f}' for x in a['accuracies'])})")


@curriculum_group.command(name="generate")
@click.argument("skill", type=SKILL_NAMES)
@click.option("--level", type=click.IntRange(min=1), required=True, help="Difficulty level (binary 1-5, syllo 1-10).")
@click.option("--count", type=click.IntRange(min=1), default=200, show_default=True, help="Records to write.")
@click.option("--seed", default="0", show_default=True, help="Seed of the draw: the same seed, the same records.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON-lines file to write (then drop it into inbox/ with a sidecar naming its spec). "
                   "Default: standard output.")
@domain_errors
def generate(skill: str, level: int, count: int, seed: str, out: Path | None) -> None:
    """Write COUNT records of SKILL at LEVEL: binary as completion_v1, syllo as syllo_v1."""
    from autopilot import fsio
    from autopilot.curriculum import SKILLS, held_out

    module = SKILLS[skill]
    if level > module.MAX_LEVEL:
        raise click.BadParameter(f"{skill} has levels 1 to {module.MAX_LEVEL}", param_hint="--level")
    text = held_out.jsonl(module.generate(level, count, seed=seed))
    if out is None:
        click.echo(text, nl=False)
        return
    fsio.atomic_write_text(out, text)
    click.echo(f"wrote {count} {skill} records of level {level} ({module.SPEC}) to {out}")
