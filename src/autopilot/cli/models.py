"""`autopilot models list | show | promote | rollback`: the study's champion in models/<study>/."""

from __future__ import annotations

import json

import click

from autopilot.cli import domain_errors, main, pass_project
from autopilot.cli.loop import resolve_study, study_option
from autopilot.formatting import number
from autopilot.paths import Project

reason_option = click.option("--reason", required=True,
                             help="Why (recorded in models/<study>/history.jsonl and labbook.md with your user@host).")


@main.group()
def models() -> None:
    """The study's champion: models/<study>/current and the history of promotions and rollbacks.

    The judge's promotions reach models/ in the step after the journal; these commands show the champions and
    let a person promote another run or roll back. Every change is recorded (who, why) and written to the
    labbook, and the new champion becomes the study's incumbent: later runs are judged against it.
    """


@models.command(name="list")
@study_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_project
@domain_errors
def list_cmd(project: Project, study_name: str | None, as_json: bool) -> None:
    """Every promotion, manual promotion and rollback, oldest first, with validation and test scores."""
    from autopilot.registry.listing import history_rows

    study = resolve_study(project, study_name)
    rows = history_rows(study)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo(f"study {study.name} has no champion yet")
    for r in rows:
        forced = " (forced)" if r["forced"] else ""
        mark = "*" if r["current"] else " "
        kept = "" if r["weights_kept"] else "  [weights removed by retention]"
        click.echo(f"{mark} {r['at']}  {r['event']:<16} run {r['run_id']}  {study.metric_name} {number(r['value'])}  "
                   f"test {number(r['test_value'])}  by {r['by']}{forced}: {r['reason']}{kept}")
    if rows:
        click.echo(f"* = current: models/{study.name}/current")


@models.command()
@study_option
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@pass_project
@domain_errors
def show(project: Project, study_name: str | None, run_id: str | None, as_json: bool) -> None:
    """What a champion is (default: the current one): metric, interval, test score, weights, who promoted it."""
    from autopilot.registry.listing import champion_info

    study = resolve_study(project, study_name)
    info = champion_info(study, run_id)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for line in describe(study, info):
        click.echo(line)


@models.command()
@study_option
@click.argument("run_id")
@reason_option
@click.option("--force", is_flag=True, help="Promote a run the judge did not promote (the record says so).")
@pass_project
@domain_errors
def promote(project: Project, study_name: str | None, run_id: str, reason: str, force: bool) -> None:
    """Make RUN the champion and the study's incumbent (its weights exported and test-scored if it is new)."""
    from autopilot.registry import champion

    study = resolve_study(project, study_name)
    event = champion.promote(study, run_id, reason, force=force)
    click.echo(f"run {run_id} is the champion (before: run {event['previous'] or 'none'}); models/{study.name}/"
               f"current points to it, and later runs are judged against it")


@models.command()
@study_option
@click.option("--to", "to", help="An earlier champion to go back to (default: the one before the current).")
@reason_option
@pass_project
@domain_errors
def rollback(project: Project, study_name: str | None, to: str | None, reason: str) -> None:
    """Make the previous champion (or --to RUN) the champion and the study's incumbent again.

    Its folder is the one it was promoted with, unchanged: the weights come back byte for byte.
    """
    from autopilot.registry import champion

    study = resolve_study(project, study_name)
    event = champion.rollback(study, reason, to=to)
    click.echo(f"rolled back from run {event['previous']} to run {event['run_id']}; models/{study.name}/current "
               f"points to it, and later runs are judged against it")


def describe(study, info: dict) -> list[str]:
    """`models show` for people."""
    from autopilot.registry.champion import describe_test

    r = info["record"]
    lines = [f"run {info['run_id']}" + (" (current champion)" if info["current"] else " (an earlier champion)")]
    if r is None:
        return lines + ["its folder was removed by retention (retention.keep_champions)"]
    iv = r["interval"]
    interval = "" if not iv else f", delta interval [{iv['low']:+.4f}, {iv['high']:+.4f}] vs run {r['compared_to']}"
    w = r["weights"]
    lines += [f"verdict: {r['verdict']}; {r['metric']['name']} = {number(r['metric']['value'])} over "
              f"{len(r['seed_values'])} seed(s){interval}",
              describe_test(r["test"]),
              f"weights: {info['folder']}/{w['path']} ({w['format']}, seed {w['seed_index']}, "
              f"{(info['weights_bytes'] or 0) / 2**20:.1f} MiB) from {w['source']}" if w["format"] != "none"
              else f"weights: none ({w['error']})",
              "hparams: " + ", ".join(f"{k}={v}" for k, v in r["hparams"].items())]
    lines += [f"{ev['at']} {ev['event']} by {ev['by']}: {ev['reason']}" for ev in info["events"]]
    return lines
