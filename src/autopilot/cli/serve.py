"""`autopilot serve`: the study's champion over HTTP, OpenAI-compatible for language models."""

from __future__ import annotations

import click

from autopilot.cli import domain_errors, main, pass_project
from autopilot.cli.loop import resolve_study, study_option
from autopilot.errors import MissingDependency
from autopilot.paths import Project


@main.command()
@study_option
@click.option("--host", help="Address to listen on. Default: serve.host of the study (127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on. Default: serve.port (8000).")
@pass_project
@domain_errors
def serve(project: Project, study_name: str | None, host: str | None, port: int | None) -> None:
    """Serve the study's champion (models/<study>/current) until Ctrl-C, reloading it when it changes.

    A causal_lm champion answers OpenAI-compatible POST /v1/chat/completions (stream too) and GET /v1/models;
    the digits CNN answers POST /v1/predict. GET /health needs no key; every other route needs
    `Authorization: Bearer KEY`, KEY being the value of the environment variable serve.api_key_env names
    (AUTOPILOT_SERVE_API_KEY). Without that variable set, the server listens on a loopback address only.
    A promotion or rollback is picked up within serve.reload_seconds; requests in flight finish on the old one.
    """
    study = resolve_study(project, study_name)
    try:
        from autopilot.serve.app import api_key, check_bind
        from autopilot.serve.app import serve as run
    except ImportError as e:
        raise MissingDependency(f"autopilot serve needs the optional extra `serve` ({e.name} is missing): run "
                                "`pip install 'autopilot[serve]'` (and `[lm]` for a causal_lm champion)") from None
    host = host or study.settings.serve.host
    port = study.settings.serve.port if port is None else port
    key = api_key(study)
    check_bind(study, host, key)
    env_name = study.settings.serve.api_key_env
    click.echo(f"serving the champion of study {study.name} (models/{study.name}/current) on http://{host}:{port}/; "
               + (f"API key: the value of ${env_name}" if key else f"no API key (${env_name} is unset): loopback only"))
    run(study, host, port)
