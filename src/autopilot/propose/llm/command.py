"""The `command` backend: an agent CLI (`codex exec -`, `claude -p`, a script) reads the prompt on stdin and
prints its answer on stdout.

The command is an argv list run without a shell from the project root, in its own process group, with this
process's environment less the variables of the LLM's key (an agent brings its own credentials, and it reads
a prompt made partly of data). Past llm.timeout_seconds, or once it has printed more than MAX_ANSWER_BYTES,
the whole group is killed (an agent may have started children of its own). A non-zero exit status is a
failure whose message carries the tail of stderr.

Usage:
    reply = run(settings, prompt)    # Reply(stdout, meta) or LLMFailure
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time

from autopilot import apikeys, processes
from autopilot.propose.llm import MAX_ANSWER_BYTES, Endpoint, LLMFailure, Reply

STDERR_CHARS = 600  # of stderr kept in a failure message
READ_BYTES = 64 * 1024


class OutOfTime(Exception):
    pass


class TooLarge(Exception):
    pass


def run(settings: Endpoint, prompt: str) -> Reply:
    if not settings.command:
        raise LLMFailure("llm.backend is `command` but llm.command is not set (e.g. [claude, -p])", "config")
    argv = list(settings.command)
    meta = {"backend": "command", "model": argv[0], "command": argv, "latency_seconds": None,
            "prompt_tokens": None, "completion_tokens": None, "attempts": 1, "errors": []}
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, env=apikeys.without_keys(os.environ, settings.key_variables))
    except OSError as e:
        raise LLMFailure(f"llm.command {argv[0]!r} cannot be started: {e.strerror}", "config", meta) from None
    try:
        out, err = collect(proc, prompt.encode("utf-8", errors="replace"), started + settings.timeout)
    except OutOfTime:
        raise LLMFailure(f"llm.command {argv[0]!r} gave no answer within llm.timeout_seconds="
                         f"{settings.timeout:g}; its process group was killed", "timeout", meta) from None
    except TooLarge:
        raise LLMFailure(f"llm.command {argv[0]!r} printed more than {MAX_ANSWER_BYTES} bytes; its process group "
                         "was killed", "response_too_large", meta) from None
    finally:
        kill_group(proc)
        meta["latency_seconds"] = round(time.monotonic() - started, 3)
    text = out.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        tail = err.decode("utf-8", errors="replace")[-STDERR_CHARS:].strip()
        raise LLMFailure(f"llm.command {argv[0]!r} exited with status {proc.returncode}: {tail}",
                         "command_failed", meta, response=text)
    return Reply(text, meta)


def collect(proc: subprocess.Popen, data: bytes, deadline: float) -> tuple[bytes, bytes]:
    """Write `data` to the command's stdin, read its stdout (at most MAX_ANSWER_BYTES) and the tail of its stderr
    until it exits; OutOfTime past `deadline`, TooLarge past the size."""
    out, err = bytearray(), bytearray()
    pending = memoryview(data)
    os.set_blocking(proc.stdin.fileno(), False)
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        sel.register(proc.stdin, selectors.EVENT_WRITE)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise OutOfTime()
            for key, _ in sel.select(left):
                if key.fileobj is proc.stdin:
                    try:
                        pending = pending[os.write(key.fd, pending[:READ_BYTES]):]
                    except BrokenPipeError:  # the agent does not read all of it: its answer decides
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, READ_BYTES)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if key.data is out and len(out) > MAX_ANSWER_BYTES:
                    raise TooLarge()
                if key.data is err:
                    del err[:-STDERR_CHARS * 4]
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise OutOfTime() from None
    return bytes(out), bytes(err)


def kill_group(proc: subprocess.Popen) -> None:
    """Kill what is left of the command's process group (a finished agent's stray children too) and reap it."""
    processes.kill_group(proc.pid)
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None and not stream.closed:
            stream.close()
