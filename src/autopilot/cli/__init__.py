"""The `autopilot` command: one click group; each area's commands live in a module beside this one.

Commands are thin: parse, call one function of the package, report. Expected failures (AutopilotError)
become a one-line message and exit status 1; usage errors exit 2. Heavy imports (torch, optuna) happen
inside the functions that need them so that every command starts fast.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

import click

from autopilot.errors import AutopilotError
from autopilot.paths import Project


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="AUTOPILOT_ROOT",
    help="Project folder (holds Snakefile, config/, runs/). Default: found upwards from the current folder.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.version_option(package_name="autopilot")
@click.pass_context
def main(ctx: click.Context, root: Path | None, verbose: bool) -> None:
    """autopilot: an auditable autopilot for machine-learning training.

    A Snakemake workflow proposes, guards, trains, judges and records runs; these commands do the work
    inside each rule and let you look at and steer a study. Every decision is a file under runs/<study>/.
    """
    setup_logging(verbose)
    if os.environ.get("AUTOPILOT_COMMAND_SERVER"):
        logging.getLogger(__name__).debug("pid %d, forked by the warm command server (pid %s)", os.getpid(),
                                          os.environ["AUTOPILOT_COMMAND_SERVER"])
    ctx.obj = Project(root.resolve()) if root else Project.find()


pass_project = click.make_pass_decorator(Project)


def domain_errors(fn):
    """Turn expected failures into a clear one-line message (exit 1) instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AutopilotError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


from autopilot.cli import loop  # noqa: E402,F401  (registers the loop's commands)
from autopilot.cli import ingest  # noqa: E402,F401  (registers validate, ingest and queue)
from autopilot.cli import ops  # noqa: E402,F401  (registers init, status, watch, pause, resume, stop, skip, cron, daemon, report, monitor)
from autopilot.cli import llm  # noqa: E402,F401  (registers llm serve-local)
from autopilot.cli import export  # noqa: E402,F401  (registers export mlflow, export optuna)
from autopilot.cli import config  # noqa: E402,F401  (registers config check and config docs)
from autopilot.cli import models  # noqa: E402,F401  (registers models list, show, promote, rollback)
from autopilot.cli import serve  # noqa: E402,F401  (registers serve)
from autopilot.cli import digest  # noqa: E402,F401  (registers digest)
from autopilot.cli import code  # noqa: E402,F401  (registers code log|show|revert, approve, reject)
from autopilot.cli import curriculum  # noqa: E402,F401  (registers curriculum show, curriculum generate)
