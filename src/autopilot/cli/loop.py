"""Commands of the loop: propose, guard, train, judge, journal (one per workflow rule), and results."""

from __future__ import annotations

import click

from autopilot.cli import domain_errors, main, pass_project
from autopilot.paths import Project

study_option = click.option(
    "--study", "study_name", envvar="AUTOPILOT_STUDY",
    help="Study name (folder under runs/). Default: the study of config/config.yaml.",
)


def resolve_study(project: Project, name: str | None):
    from autopilot.study import Study

    if name:
        return Study.from_study_dir(project, name)
    return Study.load(project, project.default_config)

run_option = click.option("--run", "run_id", required=True, help="Run id (zero-padded, e.g. 00007).")


@main.command()
@study_option
@click.option("--run", "run_id", help="Run id (zero-padded, e.g. 00007); required unless --dry-run.")
@click.option("--generation", type=click.IntRange(min=1),
              help="The run's generation (the workflow passes it). Default: as its proposal recorded it, else a "
                   "generation of its own after the history.")
@click.option("--place", type=click.IntRange(min=0), default=0, show_default=True,
              help="The run's place in its generation: which of the generation's points it takes.")
@click.option("--dry-run", is_flag=True,
              help="Print the prompt(s) that would be sent and the proposal that comes back; write nothing. "
                   "--run defaults to the study's next run.")
@pass_project
@domain_errors
def propose(project: Project, study_name: str | None, run_id: str | None, generation: int | None, place: int,
            dry_run: bool) -> None:
    """Write the run's proposal.json (policy, overrides, rationale, hypothesis).

    The study's first successful run is the baseline; a runs/<study>/next_config.json written by a person
    comes next; otherwise the study's policy proposes. A proposal the guard would reject is replaced by the
    fallback policy's, with the reason recorded in `fallback_from`. An LLM policy saves each prompt and
    answer in the run's llm/ folder.
    """
    from autopilot.ledger import Slot
    from autopilot.ops.control import hold_if_disk_low
    from autopilot.propose.decide import preview_run, propose_run

    if run_id is None and not dry_run:
        raise click.BadParameter("give the run id (or --dry-run)", param_hint="--run")
    study = resolve_study(project, study_name)
    slot = None if generation is None else Slot(generation, place)
    if dry_run:
        print_preview(*preview_run(study, run_id or next_run_id(study), slot))
        return
    hold_if_disk_low(study)  # the first step of a run: the study holds here (paused.json, labbook) while disk is low
    proposal = propose_run(study, run_id, slot)
    click.echo(f"run {run_id}: {proposal['policy']} proposes {proposal['overrides'] or 'the baseline'}")


def next_run_id(study) -> str:
    from autopilot.paths import format_run_id, run_number

    ids = study.paths.run_ids()
    return format_run_id(run_number(ids[-1]) + 1 if ids else 1)


def print_preview(proposal: dict, exchanges: list[dict]) -> None:
    import json

    if not exchanges:
        click.echo(f"(policy {proposal['policy']} sends no prompt)")
    for x in exchanges:
        meta = x["meta"]
        click.echo(f"===== {x['role']} prompt =====\n{x['prompt']}")
        click.echo(f"===== {x['role']} answer ({meta['status']}, {meta.get('latency_seconds')} s"
                   + (f": {meta['error']}" if meta.get("error") else "") + f") =====\n{x['response']}")
    click.echo(f"===== proposal for run {proposal['run_id']} (dry run: nothing written) =====")
    click.echo(json.dumps(proposal, indent=2, ensure_ascii=False))


@main.command(name="guard")
@study_option
@run_option
@pass_project
@domain_errors
def guard_cmd(project: Project, study_name: str | None, run_id: str) -> None:
    """Check the run's proposal and write config.json and guard.json.

    Deny by default: only search-space keys within their ranges, a real rationale and hypothesis, and
    budget left. Nothing reaches the trainer without passing here.
    """
    from autopilot.guard import guard_run

    decision = guard_run(resolve_study(project, study_name), run_id)
    click.echo(f"run {run_id}: guard accepted the {decision['policy']} proposal")


@main.command()
@study_option
@run_option
@pass_project
@domain_errors
def train(project: Project, study_name: str | None, run_id: str) -> None:
    """Train the run's guarded config.json (and the extra seeds the judge's protocol asks for).

    In a continual study: one trainer, from the champion's weights, on the run's claimed dataset.

    The trainer runs in its own process group, killed past budget.max_seconds_per_run; whatever
    happens, trainer_summary.json is written. A trainer failure is recorded, not raised: the loop goes on.
    """
    from autopilot.continual import training
    from autopilot.train import runner

    study = resolve_study(project, study_name)
    summaries = (training if study.settings.is_continual else runner).train_run(study, run_id)
    first = summaries[0]
    click.echo(f"run {run_id}: {first['status']}, {first['metric']['name']}={first['metric']['value']} "
               f"({len(summaries)} seed(s))")


@main.command(name="judge")
@study_option
@run_option
@pass_project
@domain_errors
def judge_cmd(project: Project, study_name: str | None, run_id: str) -> None:
    """Compare the run with the incumbent and write verdict.json.

    A candidate is `improved` (promoted) only when its stage-1 seeds and then its fresh confirmation seeds each
    clear a one-sided test against the incumbent's record, over seed-level metrics and the study's measured
    seed noise; `over_limit` when it breaks a limit of judge.constraints. The verdict lists every seed with the
    stage it served; the paired bootstrap interval over examples is recorded beside the tests. The run's seeds
    must all be trained (autopilot train) first.

    In a continual study: the challenger against the champion on every evaluation set, paired per example (Holm
    over the sets); then the run's dataset goes to queue/done/ or queue/quarantine/ and the curriculum records it.
    """
    from autopilot.continual import judging
    from autopilot.judge import verdicts

    study = resolve_study(project, study_name)
    verdict = (judging if study.settings.is_continual else verdicts).judge_run(study, run_id)
    click.echo(f"run {run_id}: {verdict['verdict']}: {verdict['reason']}")


@main.command()
@study_option
@run_option
@pass_project
@domain_errors
def journal(project: Project, study_name: str | None, run_id: str) -> None:
    """Append the judged run to labbook.md and history.jsonl (and any run the ledger misses)."""
    from autopilot.journal.record import journal_run

    entry = journal_run(resolve_study(project, study_name), run_id)
    click.echo(f"run {run_id}: journaled ({entry['verdict']})")


@main.command()
@study_option
@run_option
@pass_project
@domain_errors
def champion(project: Project, study_name: str | None, run_id: str) -> None:
    """After the run is journaled: make the study's incumbent the champion in models/<study>/, apply retention.

    A promotion exports the weights, scores them once on the held-out test split and points `current` to them
    (this step runs in the trainer's software for that); then the checkpoint folders retention no longer keeps
    are removed. What the step did is written to the run's registry.json.
    """
    from autopilot.registry.champion import step

    record = step(resolve_study(project, study_name), run_id)
    event = record["event"]
    click.echo(f"run {run_id}: " + (f"run {event['run_id']} is the champion now (models/{record['study']}/current)"
                                    if event else f"the champion stays run {record['champion'] or '(none yet)'}")
               + f"; retention freed {record['freed_bytes'] / 2**20:.1f} MiB")


@main.command()
@study_option
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON lines.")
@click.option("--last", type=int, default=0, help="Only the last N runs.")
@pass_project
@domain_errors
def results(project: Project, study_name: str | None, as_json: bool, last: int) -> None:
    """Print the study's results table: run, policy, key overrides, metric with its interval, verdict."""
    from autopilot.ops.results import print_results

    print_results(resolve_study(project, study_name), as_json=as_json, last=last)
