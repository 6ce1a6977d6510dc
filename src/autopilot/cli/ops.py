"""Commands to operate a study: init, status, watch, pause, resume, stop, skip, cron, daemon, report, monitor."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from autopilot.cli import domain_errors, main, pass_project
from autopilot.cli.loop import resolve_study, study_option
from autopilot.errors import ConfigError
from autopilot.paths import Project

invocation_options = [
    click.option("--cores", default="all", show_default=True, help="Snakemake's --cores."),
    click.option("--profile", default="profiles/local", show_default=True, help="Snakemake profile."),
    click.option("--configfile", type=click.Path(dir_okay=False, path_type=Path),
                 help="Study file given to Snakemake instead of config/config.yaml."),
]


def with_invocation(fn):
    for option in reversed(invocation_options):
        fn = option(fn)
    return fn


def make_invocation(cores: str, profile: str, configfile: Path | None):
    from autopilot.ops.cron import Invocation

    return Invocation(cores=cores, profile=profile, configfile=configfile)


# --- a new project ---------------------------------------------------------------------------------------
@main.command(name="init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--quick", is_flag=True, help="Cut the default study down so that a run trains in about a second "
                                            "(to see the loop work; config/config.yaml then loses its comments).")
@domain_errors
def init_project(directory: Path, quick: bool) -> None:
    """Make a new project in DIRECTORY, ready to run.

    Copies the workflow from the installed package (Snakefile, rules/, profiles/, schemas/), the default study
    (config/config.yaml, commented; more in config/studies/) and examples/, and makes the empty inbox/,
    queue/ and runs/. DIRECTORY may exist, but must not hold any of those files yet.
    """
    from autopilot.ops.scaffold import QUICK_STUDY, create_project

    root = create_project(directory, QUICK_STUDY if quick else None)
    click.echo(f"a new project in {root}; advance its study by 8 runs, then see the results:\n"
               f"  cd {root} && snakemake -c2 --profile profiles/local --config iterations=8 && autopilot results")


# --- looking ---------------------------------------------------------------------------------------------
@main.command()
@study_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
@pass_project
@domain_errors
def status(project: Project, study_name: str | None, as_json: bool) -> None:
    """Show what the study is doing: phase, run, step, loss, ETA, heartbeat, queue, best, budgets.

    A heartbeat older than two minutes while a trainer should be alive is flagged STALE (hung or gone).
    Also: the holds in force (pause, stop, the study's own pause), the last five verdicts, policy and
    fallback counts, runs and training time left, and the daemon. Reads files only; safe at any time.
    """
    from autopilot.ops.status import render, snapshot

    snap = snapshot(resolve_study(project, study_name))
    if as_json:
        click.echo(json.dumps(snap, indent=2))
    else:
        from rich.console import Console

        Console().print(render(snap))


@main.command()
@study_option
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Draw one frame and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per refresh instead of the view.")
@pass_project
@domain_errors
def watch(project: Project, study_name: str | None, interval: float, once: bool, as_json: bool) -> None:
    """Show `autopilot status` refreshed every few seconds until Ctrl-C."""
    from rich.console import Console
    from rich.live import Live

    from autopilot.ops.status import render, snapshot

    study = resolve_study(project, study_name)
    if as_json or once:
        while True:
            snap = snapshot(study)
            if as_json:
                click.echo(json.dumps(snap))
            else:
                Console().print(render(snap))
            if once:
                return
            time.sleep(interval)
    try:
        with Live(render(snapshot(study)), auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(render(snapshot(study)), refresh=True)
    except KeyboardInterrupt:
        pass


# --- steering ----------------------------------------------------------------------------------------------
def tell(project: Project, study_name: str | None, event: str, message: str) -> None:
    """Notify the study's command (notify: in its config) of a person's pause or stop, if a study can be read."""
    from autopilot import notify

    try:
        study = resolve_study(project, study_name)
    except ConfigError:  # no study to read: the control file is written all the same
        return
    notify.emit(study, event, message)


@main.command()
@study_option
@pass_project
@domain_errors
def pause(project: Project, study_name: str | None) -> None:
    """Hold the study: the trainer waits at its next step, and no new run starts.

    Writes control/pause. The trainer keeps its heartbeat (status phase `paused`); time spent paused does
    not count against the run's time budget. `autopilot resume` goes on. The study's notify command is told.
    """
    from autopilot.ops import control

    message = control.pause(project)
    click.echo(message)
    if not message.startswith("already"):
        tell(project, study_name, "paused", message)


@main.command()
@study_option
@pass_project
@domain_errors
def resume(project: Project, study_name: str | None) -> None:
    """Lift every hold: pause, stop, stop after run, and the study's own pause (too many failures).

    A paused trainer goes on within a second; new runs start at the next invocation of the workflow
    (a running daemon notices within daemon.poll_seconds; after a stop, start the daemon again).
    """
    from autopilot.ops import control

    try:
        study = resolve_study(project, study_name).paths
    except ConfigError:  # no study to read: the control files can still be removed
        study = None
    click.echo(control.resume(project, study))


@main.command()
@study_option
@click.option("--now", is_flag=True, help="End the current run at its next step (status `stopped`).")
@pass_project
@domain_errors
def stop(project: Project, study_name: str | None, now: bool) -> None:
    """Stop the loop: the current run trains to its end, then no new run starts.

    Writes control/stop-after-run: the run in training finishes, extra seeds included, and is judged and
    journaled as usual; then no new run starts and a running daemon exits. With --now, writes control/stop:
    the trainer ends the run at its next step, recorded as `stopped` (no verdict against the best).
    Either stays in force until `autopilot resume`. The study's notify command is told.
    """
    from autopilot.ops import control

    message = control.stop(project, now=now)
    click.echo(message)
    if not message.startswith("already"):
        tell(project, study_name, "stopped", message)


@main.command()
@pass_project
@domain_errors
def skip(project: Project) -> None:
    """End the current run at its next step as `skipped`; the loop goes on with the next run.

    Writes control/skip; the trainer removes it when it ends the run, so a skip applies to one run only.
    """
    from autopilot.ops import control

    click.echo(control.skip(project))


# --- running unattended --------------------------------------------------------------------------------
@main.command()
@with_invocation
@pass_project
@domain_errors
def cron(project: Project, cores: str, profile: str, configfile: Path | None) -> None:
    """Invoke the workflow once, safely from cron (bin/autopilot-cron runs this).

    One instance at a time: if another `autopilot cron` or `autopilot daemon` holds status/instance.lock,
    say so and exit 0. A stale Snakemake lock left by a killed invocation (no live snakemake process in
    this project) is cleared with `snakemake --unlock`. When the loop is held (paused, stopped, budget
    spent) nothing runs and the reason is printed. Snakemake's output is appended to
    runs/<study>/logs/cron-YYYY-MM-DD.log; the exit status is Snakemake's.
    """
    from autopilot.ops import cron as cron_module

    code, message = cron_module.run_once(project, make_invocation(cores, profile, configfile))
    click.echo(f"autopilot cron: {message}")
    raise click.exceptions.Exit(code)


@main.command()
@with_invocation
@pass_project
@domain_errors
def daemon(project: Project, cores: str, profile: str, configfile: Path | None) -> None:
    """Run the workflow again and again, one generation per invocation, until a stop condition.

    Stops on control/stop or stop-after-run, the run and training-time budgets, daemon.max_wall_seconds,
    a plateau (no `improved` in daemon.plateau_runs runs), or the workflow failing 3 times in a row. More
    than daemon.max_failures failed runs in the last daemon.failure_window pause the study (reason in
    labbook.md); while paused it waits daemon.poll_seconds between looks. SIGINT (Ctrl-C): finish the
    current run (generation), then exit; a second SIGINT or SIGTERM: stop now (the run resumes later).
    Output: runs/<study>/logs/daemon-YYYY-MM-DD.log; state: status/daemon.json (`autopilot status`).
    """
    from autopilot.ops.daemon import run_daemon

    reason = run_daemon(project, make_invocation(cores, profile, configfile))
    click.echo(f"autopilot daemon stopped: {reason}")


# --- pages -------------------------------------------------------------------------------------------------
@main.command()
@study_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the HTML file. Default: runs/<study>/report.html.")
@pass_project
@domain_errors
def report(project: Project, study_name: str | None, out: Path | None) -> None:
    """Write the study's report: one self-contained HTML file (no network needed to view it).

    Metric per run with interval bars coloured by verdict, best so far, learning curves of the recent
    runs, verdict and policy counts, failures with their error tails, and each run's rationale.
    """
    from autopilot.ops.report import write_report

    path = write_report(resolve_study(project, study_name), out)
    click.echo(f"report: {path}")


@main.command()
@study_option
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0: any free port).")
@pass_project
@domain_errors
def monitor(project: Project, study_name: str | None, port: int) -> None:
    """Serve a live page on 127.0.0.1: current run, loss curve, best so far, queue; refreshes by itself.

    JSON endpoints: /api/status (as `autopilot status --json`), /api/history, /api/curve. Ctrl-C stops it.
    """
    from autopilot.ops.monitor import make_server, serve_until_stopped

    server = make_server(resolve_study(project, study_name), port)
    click.echo(f"monitor: http://127.0.0.1:{server.server_address[1]}/  (Ctrl-C stops)")
    serve_until_stopped(server)
