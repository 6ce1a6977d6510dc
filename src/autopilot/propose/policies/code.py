"""The coder (code mode): an LLM writes a patch to the study's training code.

Two ways, as `llm.backend` says. `openai`: the endpoint gets the coder prompt (the allow-listed files as they are,
the rules, the runs, the previous attempt's error) and answers a unified diff with its rationale and hypothesis (a
JSON object; a diff in a fenced ```diff block beside it is taken too). `command`: the agent CLI (codex exec, claude
-p) runs in the attempt's worktree with the prompt on stdin, edits the files itself and prints its rationale and
hypothesis; autopilot computes what it changed. The agent runs in the sandbox (autopilot.code.sandbox): its own
process group, a time limit (llm.timeout_seconds), the memory limit, the project read-only but its worktree, the
sealed paths hidden, an environment from the allow-list plus `code_mode.agent_env` (its API key, by name), and the
network only when `code_mode.agent_network` allows it. Every exchange is saved in the run's llm/ folder, one per
attempt (coder-1, coder-2, ...).

Usage:
    answer = ask_for_diff(ctx, prompt_text, audit, "coder-1")        # {"diff", "rationale", "hypothesis"}
    answer = run_agent(ctx, prompt_text, worktree, folder, audit, "coder-1")   # {"rationale", "hypothesis"}
"""

from __future__ import annotations

from pathlib import Path

from jsonschema import Draft202012Validator

from autopilot.code import patch, sandbox
from autopilot.propose import answers, llm
from autopilot.propose.llm import LLMFailure, extract
from autopilot.propose.llm.audit import Audit
from autopilot.propose.policies import Context


def label(ctx: Context) -> str:
    return f"code:llm:{ctx.study.settings.llm.backend}"


def ask_for_diff(ctx: Context, prompt: str, audit: Audit, role: str) -> dict:
    """The endpoint's patch for the prompt; LLMFailure when it cannot be had or read."""
    send, check = answers.coder_schemas(with_diff=True)
    settings = llm.settings_for(ctx.study)
    try:
        reply = llm.ask(settings, prompt, send, audit)
    except LLMFailure as e:
        audit.record(role, prompt, e.response, {**(e.meta or {}), "status": "failed", "failure": e.kind,
                                                "error": str(e)})
        raise
    try:
        answer = parse(reply.text, check, with_diff=True)
    except LLMFailure as e:
        audit.record(role, prompt, reply.text, {**reply.meta, "status": "failed", "failure": e.kind, "error": str(e)})
        raise
    audit.record(role, prompt, reply.text, {**reply.meta, "status": "ok"})
    return answer


def parse(text: str, check: dict, with_diff: bool) -> dict:
    """The coder's answer: the JSON object, its diff from the object or from a fenced ```diff block."""
    try:
        found = extract.json_object(text)
    except LLMFailure:
        found = {}
    if with_diff and not found.get("diff"):
        found["diff"] = patch.extract_diff(text)
    answer = {k: found.get(k, "") for k in check["properties"]}
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(answer)'}: {e.message}"
                for e in Draft202012Validator(check).iter_errors(answer)]
    if problems:
        raise LLMFailure("the coder's answer does not match its schema: " + "; ".join(problems[:5]), "invalid_answer",
                         response=text)
    return answer


def agent_policy(ctx: Context, worktree: Path, home: Path) -> sandbox.Policy:
    code = ctx.study.settings.code_mode
    return sandbox.Policy(root=ctx.study.project.root.resolve(), writable=(home.resolve(), worktree.resolve()),
                          sealed=tuple((ctx.study.project.root / s).resolve() for s in code.sealed),
                          network=code.agent_network, memory_mb=code.memory_mb, env_names=code.env,
                          secret_names=code.agent_env, strict=code.strict_sandbox)


def run_agent(ctx: Context, prompt: str, tree: Path, worktree: Path, folder: Path, audit: Audit, role: str) -> dict:
    """Let the agent CLI edit the worktree (in the sandbox, from the project folder `tree` inside it); its answer."""
    settings = llm.settings_for(ctx.study)
    if not settings.command:
        raise LLMFailure("llm.backend is `command` but llm.command is not set (e.g. [claude, -p])", "config")
    result = sandbox.run(list(settings.command), agent_policy(ctx, worktree, folder / "agent-home"), "agent CLI",
                         tree, settings.timeout, folder / "agent.log", stdin=prompt.encode("utf-8"),
                         tail_chars=200_000)
    meta = {"backend": "command", "model": settings.command[0], "command": list(settings.command),
            "latency_seconds": result.seconds, "prompt_tokens": None, "completion_tokens": None, "attempts": 1,
            "errors": [], "sandbox": result.report}
    if result.returncode is None or not result.ok:
        kind = "timeout" if result.returncode is None else "command_failed"
        error = (f"llm.command {settings.command[0]!r} " + (f"gave no answer within llm.timeout_seconds="
                 f"{settings.timeout:g}; its sandbox was killed" if kind == "timeout" else
                 f"exited with status {result.returncode}: {result.output[-600:].strip()}"))
        audit.record(role, prompt, result.output, {**meta, "status": "failed", "failure": kind, "error": error})
        raise LLMFailure(error, kind, meta, response=result.output)
    _, check = answers.coder_schemas(with_diff=False)
    try:
        answer = parse(last_object(result.output), check, with_diff=False)
    except LLMFailure as e:
        audit.record(role, prompt, result.output, {**meta, "status": "failed", "failure": e.kind, "error": str(e)})
        raise
    audit.record(role, prompt, result.output, {**meta, "status": "ok"})
    return answer


def last_object(text: str) -> str:
    """The text from the last line that opens a JSON object: agents print their work before the answer."""
    lines = text.rstrip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].lstrip().startswith("{"):
            return "\n".join(lines[i:])
    return text
