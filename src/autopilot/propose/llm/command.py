"""The `command` backend: an agent CLI (`codex exec -`, `claude -p`, a script) reads the prompt on stdin and
prints its answer on stdout.

The command is an argv list run without a shell from the project root, in its own process group; past
llm.timeout_seconds the whole group is killed (an agent may have started children of its own). A non-zero
exit status is a failure whose message carries the tail of stderr.

Usage:
    reply = run(settings, prompt)    # Reply(stdout, meta) or LLMFailure
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from autopilot.propose.llm import Endpoint, LLMFailure, Reply

STDERR_CHARS = 600  # of stderr kept in a failure message


def run(settings: Endpoint, prompt: str) -> Reply:
    if not settings.command:
        raise LLMFailure("llm.backend is `command` but llm.command is not set (e.g. [claude, -p])", "config")
    argv = list(settings.command)
    meta = {"backend": "command", "model": argv[0], "command": argv, "latency_seconds": None,
            "prompt_tokens": None, "completion_tokens": None, "attempts": 1, "errors": []}
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as e:
        raise LLMFailure(f"llm.command {argv[0]!r} cannot be started: {e.strerror}", "config", meta) from None
    try:
        out, err = proc.communicate(prompt.encode("utf-8"), timeout=settings.timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        meta["latency_seconds"] = round(time.monotonic() - started, 3)
        raise LLMFailure(f"llm.command {argv[0]!r} gave no answer within llm.timeout_seconds="
                         f"{settings.timeout:g}; its process group was killed", "timeout", meta) from None
    meta["latency_seconds"] = round(time.monotonic() - started, 3)
    text = out.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        tail = err.decode("utf-8", errors="replace")[-STDERR_CHARS:].strip()
        raise LLMFailure(f"llm.command {argv[0]!r} exited with status {proc.returncode}: {tail}",
                         "command_failed", meta, response=text)
    return Reply(text, meta)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()
