"""The prompts: a markdown template (autopilot/templates/<role>.md, or the study's own) filled from the study's files.

What a prompt holds: the goal, the metric and its direction, the search space with types and ranges, the
baseline, a compact table of past runs (changes, metric, interval, verdict, status), the best run, the last
failure's error tail, the workpad notes, the mentor's notes and the open shared TODOs (and, under policy
hybrid, TPE's view). It is kept under llm.max_prompt_chars by summarizing the runs older than the latest
llm.recent_runs (the best run always keeps its row), then by cutting notes to their latest part. Text that
comes from files (error tails, notes, TODOs, anything of a dataset) enters only inside fenced blocks that
the prompt declares to be data.

Usage:
    text = worker_prompt(ctx)
    text = mentor_prompt(ctx, proposal)
"""

from __future__ import annotations

import json
import logging
import re
import string
from collections import Counter
from importlib import resources

from autopilot.formatting import delta_text, describe_overrides, metric_text
from autopilot.propose import workpad
from autopilot.propose.llm import LLMFailure
from autopilot.propose.policies import Context

log = logging.getLogger(__name__)

NOTES_CHARS = 3000  # of each notes file, before the prompt has to shrink


def shrink_steps(recent: int) -> list[tuple[int | None, int]]:
    """(latest runs shown in full - None: all -, characters of each notes file), tried in order until it fits."""
    few = min(recent, 3)
    return [(None, NOTES_CHARS), (recent, NOTES_CHARS), (recent, 800), (few, 800), (few, 200)]


def worker_prompt(ctx: Context, optimizer: str = "", feedback: str = "") -> str:
    """The worker's prompt; `feedback` (the guard's reasons for its previous answer) comes last, where a small model
    heeds it most (the package's template ends with $feedback; a study's own template without it gets it appended)."""
    section = REJECTED.format(feedback=feedback) if feedback else ""
    text = fit(ctx, "worker", {"optimizer": optimizer, "feedback": section})
    return text if not section or section in text else text + "\n" + section


REJECTED = """
## Your previous answer for this run was rejected
The guard rejected it for these reasons. Answer again, in the same JSON form, and fix each one (values must lie in
the allowed ranges of the search space):

{feedback}
"""


def mentor_prompt(ctx: Context, proposal: dict, optimizer: str = "") -> str:
    answer = {k: proposal[k] for k in ("overrides", "rationale", "hypothesis", "housekeeping")}
    return fit(ctx, "mentor", {"optimizer": optimizer, "proposal": quoted(json.dumps(answer, indent=2))})


def coder_prompt(ctx: Context, files: str, rules: str, feedback: str, agent: bool) -> str:
    """The coder's prompt (code mode): the study, the allow-listed files as they are, the rules a patch must keep,
    and what went wrong with its previous attempt; an agent CLI is told to edit the files in its folder instead."""
    how = AGENT_ANSWER if agent else DIFF_ANSWER
    return fit(ctx, "coder", {"optimizer": "", "files": files, "rules": rules, "answer": how,
                              "feedback": feedback or "This is your first attempt for this run."})


CODER_EXAMPLE = {  # the form of an answer, shown to the coder: a real diff inside JSON, from another study
    "diff": "--- a/model.py\n+++ b/model.py\n@@ -3,3 +3,4 @@ def forward(x):\n     h = layer1(x)\n"
            "+    h = normalize(h)\n     return layer2(h)\n",
    "rationale": "Activations grow with depth in runs 00004 and 00006; normalizing the hidden layer should keep the "
                 "gradients in range.",
    "hypothesis": "The loss falls faster and val_accuracy rises by a point."}
DIFF_ANSWER = ("""Answer with one JSON object and nothing else, of this shape:

{"diff": "<the unified diff>", "rationale": "why this change, in light of the runs above",
 "hypothesis": "what the metric should show if it works"}

The diff is a unified diff against the files exactly as shown above, paths relative to the project. An example of
the form, from another study (its file is not this study's):

""" + json.dumps(CODER_EXAMPLE))
AGENT_ANSWER = ("""Edit the files in your current folder directly (only those listed above). When you are done, print
one JSON object as the last thing you write:

{"rationale": "why this change, in light of the runs above",
 "hypothesis": "what the metric should show if it works"}""")


def fit(ctx: Context, role: str, extra: dict) -> str:
    cfg = ctx.study.settings.llm
    template = load_template(ctx, role)
    for shown, notes in shrink_steps(cfg.recent_runs):
        text = render(template, {**sections(ctx, shown, notes), **extra})
        if len(text) <= cfg.max_prompt_chars:
            return text
    log.warning("the %s prompt is %d characters, over llm.max_prompt_chars=%d even with old runs summarized "
                "and notes cut; sending it as it is", role, len(text), cfg.max_prompt_chars)
    return text


def load_template(ctx: Context, role: str) -> string.Template:
    own = {"worker": ctx.study.settings.llm.template, "mentor": ctx.study.settings.mentor.template}.get(role)
    if own is None:
        return string.Template((resources.files("autopilot") / "templates" / f"{role}.md").read_text("utf-8"))
    path = ctx.study.project.root / own
    try:
        return string.Template(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise LLMFailure(f"the study's {role} template {path} cannot be read: {e.strerror}", "config") from None


def render(template: string.Template, values: dict) -> str:
    try:
        return template.substitute(values)
    except (KeyError, ValueError) as e:
        raise LLMFailure(f"prompt template: unknown or malformed placeholder {e} (known: "
                         f"{', '.join('$' + k for k in sorted(values))})", "config") from None


def sections(ctx: Context, shown: int | None, notes_chars: int) -> dict[str, str]:
    study = ctx.study
    cfg = study.config
    todos = workpad.open_todos(study)
    return {
        "study": study.name, "task": cfg["task"], "run_id": ctx.run_id,
        "goal": cfg["llm"]["goal"] or f"{cfg['metric']['goal']} {study.metric_name}",
        "metric": study.metric_name, "direction": "higher" if study.maximize else "lower",
        "search_space": search_space_table(study.search_space, cfg["baseline"]),
        "baseline": f"`{json.dumps(cfg['baseline'])}`",
        "runs": runs_table(ctx, shown) + siblings_table(ctx),
        "best": best_run(ctx),
        "last_failure": last_failure(ctx.history),
        "workpad": quoted_or(workpad.tail(workpad.workpad_file(study), notes_chars), "(empty)"),
        "mentor_notes": quoted_or(workpad.tail(workpad.mentor_file(study), notes_chars), "(none yet)"),
        "todos": quoted_or("\n".join(f"{i} {text}" for i, text in todos), "(none open)"),
    }


def quoted(text: str) -> str:
    """Text from files as a fenced block; the fence is longer than any run of backticks inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def quoted_or(text: str, empty: str) -> str:
    return quoted(text) if text.strip() else empty


def search_space_table(space: dict, baseline: dict) -> str:
    rows = ["| key | type | allowed values | baseline |", "|---|---|---|---|"]
    for key, s in space.items():
        if s["type"] == "categorical":
            allowed = "one of " + ", ".join(json.dumps(c) for c in s["choices"])
        else:
            allowed = f"{s['low']} to {s['high']}" + (" (log scale)" if s.get("log") else "")
            allowed += f", step {s['step']}" if s.get("step", 1) != 1 else ""
        note = f" ({s['description']})" if s.get("description") else ""
        rows.append(f"| {key}{note} | {s['type']} | {allowed} | {json.dumps(baseline.get(key))} |")
    return "\n".join(rows)


def run_row(e: dict, best: dict | None) -> str:
    star = " (best)" if best is not None and e["run_id"] == best["run_id"] else ""
    policy = e["policy"] + (" (fallback)" if e.get("fallback_from") else "")
    return (f"| {e['run_id']}{star} | {policy} | {describe_overrides(e['overrides'])} | {metric_text(e)} | "
            f"{delta_text(e) or '-'} | {e['verdict']} | {e['status']} |")


def runs_table(ctx: Context, shown: int | None) -> str:
    history = ctx.history
    if not history:
        return "(no finished run yet)"
    head = [f"| run | policy | changes | {ctx.study.metric_name} | delta [interval] vs | verdict | status |",
            "|---|---|---|---|---|---|---|"]
    if shown is None or len(history) <= shown:
        return "\n".join(head + [run_row(e, ctx.best) for e in history])
    older, recent = history[:-shown], history[-shown:]
    rows = [run_row(e, ctx.best) for e in recent]
    if ctx.best is not None and ctx.best in older:
        rows.insert(0, run_row(ctx.best, ctx.best))
    return summary(ctx, older) + "\n\n" + "\n".join(head + rows)


def siblings_table(ctx: Context) -> str:
    """The runs proposed for this generation before this one: they train alongside it, not yet finished."""
    if not ctx.siblings:
        return ""
    rows = [f"| {s['run_id']} | {s['policy']} | {describe_overrides(s['overrides'])} |" for s in ctx.siblings]
    return ("\n\nProposed for this generation, to train alongside the run you propose (no results yet; a point "
            "proposed here or trained above is rejected as a duplicate):\n\n| run | policy | changes |\n|---|---|---|\n"
            + "\n".join(rows))


def summary(ctx: Context, older: list[dict]) -> str:
    verdicts = Counter(e["verdict"] for e in older)
    values = [e["value"] for e in older if e["value"] is not None]
    spread = f"; {ctx.study.metric_name} from {min(values):.4f} to {max(values):.4f}" if values else ""
    counted = ", ".join(f"{v} {n}" for v, n in verdicts.most_common())
    return (f"Runs {older[0]['run_id']} to {older[-1]['run_id']} ({len(older)} runs, summarized): {counted}"
            f"{spread}. The table lists the best run and the latest {len(ctx.history) - len(older)}.")


def best_run(ctx: Context) -> str:
    b = ctx.best
    if b is None:
        return "No successful run yet."
    return (f"Run {b['run_id']} ({b['verdict']}): {ctx.study.metric_name} = {b['value']:.4f} over "
            f"{len(b['seed_values'])} seed(s); changes: {describe_overrides(b['overrides'])}; "
            f"full parameters: `{json.dumps(b['params'])}`.")


def last_failure(history: list[dict]) -> str:
    failed = [e for e in history if e["status"] != "completed" or e.get("error")]
    if not failed:
        return "No run has failed."
    e = failed[-1]
    return (f"Run {e['run_id']} ({e['status']}; changes: {describe_overrides(e['overrides'])}). "
            f"Its error tail:\n{quoted(e.get('error') or '(no error text)')}")
