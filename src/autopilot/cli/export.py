"""Commands that copy a study out to other tools: export mlflow, export optuna."""

from __future__ import annotations

import click

from autopilot.cli import domain_errors, main, pass_project
from autopilot.cli.loop import resolve_study, study_option
from autopilot.paths import Project


@main.group(name="export")
def export_group() -> None:
    """Copy a study's finished runs to MLflow or to an Optuna storage.

    Only runs the target does not hold yet are added, so running an export again (after each invocation,
    from cron) keeps the target up to date. Nothing under runs/ is written.
    """


def report(what: str, added: list[str], present: list[str]) -> None:
    if not added:
        click.echo(f"nothing to export: {what} already holds all {len(present)} finished run(s)")
    else:
        click.echo(f"exported {len(added)} run(s) ({added[0]}..{added[-1]}) to {what}; "
                   f"{len(present)} were there already")


@export_group.command(name="mlflow")
@study_option
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True, default="sqlite:///mlflow.db",
              show_default=True,
              help="MLflow tracking store: sqlite:///FILE, a server's http(s)://..., or file:./mlruns (MLflow keeps "
                   "file stores in maintenance mode).")
@click.option("--experiment", help="MLflow experiment to write to. Default: the study's name.")
@pass_project
@domain_errors
def export_mlflow(project: Project, study_name: str | None, tracking_uri: str, experiment: str | None) -> None:
    """Write every finished run to MLflow: params, metrics per step, verdict as a tag, files as links.

    Needs the `mlflow` extra. Each run is one MLflow run named <study>/<run> in the experiment named after the
    study: the hyperparameters it trained with, seed 0's metrics.jsonl as series, the judged seed mean, delta,
    interval and seed values (autopilot/...), tags autopilot.verdict, .policy, .status, and file:// links to
    its folder and files (no copies). Look at it with `mlflow ui --backend-store-uri sqlite:///mlflow.db`.
    """
    from autopilot.ops.export.mlflow_store import export_mlflow as export

    study = resolve_study(project, study_name)
    added, present = export(study, tracking_uri, experiment)
    report(f"MLflow experiment {experiment or study.name!r} at {tracking_uri}", added, present)


@export_group.command(name="optuna")
@study_option
@click.option("--storage", required=True,
              help="Optuna storage: an RDB URL (sqlite:///optuna.db) or the path of a journal file (optuna.log).")
@click.option("--study-name", "optuna_study", help="Optuna study to write to. Default: the study's name.")
@pass_project
@domain_errors
def export_optuna(project: Project, study_name: str | None, storage: str, optuna_study: str | None) -> None:
    """Write the study to an Optuna storage, one trial per finished run, for optuna-dashboard.

    Each trial holds the run's searched parameters, its judged value (the mean over its seeds), its state
    (COMPLETE, FAIL, or PRUNED for stopped and skipped runs), the metric per step as intermediate values,
    and the verdict, policy and run folder as user attributes. Then: `optuna-dashboard sqlite:///optuna.db`.
    """
    from autopilot.ops.export.optuna_store import export_optuna as export

    study = resolve_study(project, study_name)
    added, present = export(study, storage, optuna_study)
    report(f"Optuna study {optuna_study or study.name!r} in {storage}", added, present)
