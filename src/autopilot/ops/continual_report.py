"""The report's section on a continual study: the champion's lineage, every dataset's outcome, the curriculum.

Plain HTML tables, readable without JavaScript, from the files alone: the runs' configs, data claims and verdicts,
and runs/<study>/curriculum.json.

Usage:
    html = section(study)      # "" outside continual mode
"""

from __future__ import annotations

import html

from autopilot import ledger
from autopilot.continual import lineage
from autopilot.study import Study

OUTCOME = {"done": "done", "quarantined": "quarantined", "requeued": "back in its queue"}


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def section(study: Study) -> str:
    if not study.settings.is_continual:
        return ""
    parts = ["<h2>Continual training</h2>", lineage_list(study), "<h3>Datasets, in the order they were trained on</h3>",
             datasets_table(study)]
    if study.settings.curriculum.enabled:
        parts += ["<h3>Curriculum</h3>", curriculum_tables(study)]
    return "\n".join(parts)


def lineage_list(study: Study) -> str:
    steps = lineage.chain(study)
    if not steps:
        return "<p class='muted' id='lineage'>no champion yet: runs start from the base model</p>"
    items = "".join(f'<li data-run="{esc(s["run_id"])}">run {esc(s["run_id"])}: trained on '
                    f'<b>{esc(lineage.data_name(s))}</b> ({esc(s["verdict"])})</li>' for s in steps)
    return (f"<p>The champion's weights, oldest first: {esc(lineage.describe(study, steps))}</p>"
            f"<ol id='lineage'>{items}</ol>")


def datasets_table(study: Study) -> str:
    rows = []
    for run_id in study.paths.run_ids():
        run = study.paths.run(run_id)
        verdict = ledger.read_path(run.verdict)
        claim = ledger.read_path(run.data_claim)
        if verdict is None or claim is None:
            continue
        data = (verdict.get("continual") or {}).get("data") or {}
        regressed = "; ".join(f"{s['name']}: {', '.join(s['regressed'])}"
                              for s in (verdict.get("continual") or {}).get("sets", []) if s["regressed"])
        rows.append(f'<tr data-run="{esc(run_id)}"><td>{esc(run_id)}</td><td>{esc(claim.get("source"))}</td>'
                    f'<td class="num">{esc(claim.get("records"))}</td>'
                    f'<td class="verdict verdict-{esc(verdict["verdict"])}">{esc(verdict["verdict"])}</td>'
                    f'<td>{esc(OUTCOME.get(data.get("outcome"), "-"))}</td><td class="text">{esc(regressed)}</td></tr>')
    if not rows:
        return "<p class='muted'>no dataset judged yet</p>"
    head = "<tr><th>run</th><th>dataset</th><th>records</th><th>verdict</th><th>now</th><th>regressed on</th></tr>"
    return f"<table id='datasets'>{head}{''.join(rows)}</table>"


def curriculum_tables(study: Study) -> str:
    from autopilot.curriculum import state

    out = []
    for skill, row in state.summary(study).items():
        trend = "".join(f'<tr><td>{esc(t["run_id"])}</td><td class="num">{t["level"]}</td>'
                        f'<td class="num">{t["accuracy"]:.2f}<span class="bar" '
                        f'style="width:{round(80 * t["accuracy"])}px"></span></td></tr>' for t in row["trend"])
        forgotten = ", ".join(f"level {f['level']} ({f['accuracy']:.2f})" for f in row["forgotten"])
        out.append(f'<div class="skill" id="curriculum-{esc(skill)}"><p><b>{esc(skill)}</b>: '
                   f'{esc(state.describe(row))}</p>'
                   + (f"<p class='stale'>forgets {esc(forgotten)}</p>" if forgotten else "")
                   + f"<table><tr><th>run</th><th>level</th><th>accuracy</th></tr>{trend}</table></div>")
    return "\n".join(out)
