"""`autopilot export mlflow`: every finished run of a study as an MLflow run, added once.

One MLflow experiment per study (named after it unless told otherwise). Each run gets: the hyperparameters it
trained with as params; seed 0's metrics.jsonl as metric series (step, time); the judged numbers as
`autopilot/seed_mean`, `autopilot/delta`, the interval and one `autopilot/seed_value` per seed (step k = seed k);
the verdict, policy, status and rationale as tags, and its files as file:// links (tags and the run's
description), not copies. A run is marked `autopilot.export=complete` only once all of it is written; a run an
interrupted export left incomplete is deleted and written again next time.

Usage:
    added, present = export_mlflow(study, "sqlite:///mlflow.db")
"""

from __future__ import annotations

import logging
import os

from autopilot import extras
from autopilot.enums import RunStatus
from autopilot.errors import AutopilotError
from autopilot.ops.export.records import RunRecord, finished_runs
from autopilot.study import Study

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TAG_STUDY, TAG_RUN, TAG_EXPORT = "autopilot.study", "autopilot.run_id", "autopilot.export"
RUN_STATUS = {RunStatus.COMPLETED: "FINISHED", RunStatus.STOPPED: "KILLED", RunStatus.SKIPPED: "KILLED"}  # else FAILED
BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's limits per log_batch call
MAX_TAG_CHARS = 5000
MAX_PARAM_CHARS = 6000


def client(tracking_uri: str):
    """An MlflowClient of the store; a file: store is allowed (MLflow keeps those in maintenance mode only)."""
    extras.require("mlflow", "autopilot export mlflow")
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def export_mlflow(study: Study, tracking_uri: str, experiment: str | None = None) -> tuple[list[str], list[str]]:
    """Add the study's finished runs the experiment does not hold; return (run ids added, run ids already there)."""
    mlflow_client = client(tracking_uri)
    experiment_id = experiment_id_of(mlflow_client, experiment or study.name)
    present = exported_runs(mlflow_client, experiment_id, study.name)
    added, kept = [], []
    for record in finished_runs(study):
        if record.run_id in present:
            kept.append(record.run_id)
            continue
        write_run(mlflow_client, experiment_id, record, study.metric_name)
        added.append(record.run_id)
    return added, kept


def experiment_id_of(mlflow_client, name: str) -> str:
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        return mlflow_client.create_experiment(name, tags={TAG_STUDY: name})
    if found.lifecycle_stage != "active":
        raise AutopilotError(f"MLflow experiment {name!r} is deleted in this store: restore it "
                             f"(mlflow experiments restore --experiment-id {found.experiment_id}) or pass --experiment")
    return found.experiment_id


def exported_runs(mlflow_client, experiment_id: str, study: str) -> set[str]:
    """Run ids of the study written completely before; runs an interrupted export left half-written are deleted."""
    complete = set()
    token = None
    while True:
        page = mlflow_client.search_runs([experiment_id], f"tags.`{TAG_STUDY}` = '{study}'", max_results=1000,
                                         page_token=token)
        for run in page:
            if run.data.tags.get(TAG_EXPORT) == "complete":
                complete.add(run.data.tags[TAG_RUN])
            else:
                log.warning("deleting MLflow run %s, left incomplete by an interrupted export", run.info.run_id)
                mlflow_client.delete_run(run.info.run_id)
        token = page.token
        if not token:
            return complete


def write_run(mlflow_client, experiment_id: str, record: RunRecord, metric_name: str) -> None:
    from mlflow.entities import Metric, Param, RunTag

    start_ms = int(record.started.timestamp() * 1000)
    run = mlflow_client.create_run(experiment_id, start_time=start_ms, run_name=f"{record.study}/{record.run_id}",
                                   tags={TAG_STUDY: record.study, TAG_RUN: record.run_id, TAG_EXPORT: "incomplete"})
    run_id = run.info.run_id
    params = [Param(k, render_param(v)) for k, v in sorted(record.hparams.items())]
    metrics = [Metric(name, value, start_ms + int(seconds * 1000), step)
               for step, seconds, name, value in record.series()]
    metrics += [Metric(name, value, int(record.finished.timestamp() * 1000), step)
                for name, value, step in judged_metrics(record, metric_name, {m.key for m in metrics})]
    tags = [RunTag(k, v[:MAX_TAG_CHARS]) for k, v in run_tags(record).items()]
    for kind, items in (("params", params), ("metrics", metrics), ("tags", tags)):
        for i in range(0, len(items), BATCH[kind]):
            mlflow_client.log_batch(run_id, **{kind: items[i:i + BATCH[kind]]})
    mlflow_client.set_terminated(run_id, RUN_STATUS.get(record.entry["status"], "FAILED"),
                                 end_time=int(record.finished.timestamp() * 1000))
    mlflow_client.set_tag(run_id, TAG_EXPORT, "complete")


def render_param(value) -> str:
    import json

    text = value if isinstance(value, str) else repr(value) if isinstance(value, float) else json.dumps(value)
    return text[:MAX_PARAM_CHARS]


def judged_metrics(record: RunRecord, metric_name: str, logged: set[str]) -> list[tuple[str, float, int]]:
    """(name, value, step) of what the judge made of the run, and the final metric if no series holds it."""
    entry = record.entry
    out = [("autopilot/seed_value", v, k) for k, v in enumerate(entry["seed_values"])]
    if entry["value"] is not None:
        out.append(("autopilot/seed_mean", entry["value"], 0))
    if entry["delta"] is not None:
        out.append(("autopilot/delta", entry["delta"], 0))
    if entry["interval"]:
        out += [("autopilot/interval_low", entry["interval"]["low"], 0),
                ("autopilot/interval_high", entry["interval"]["high"], 0)]
    out.append(("autopilot/train_seconds", float(entry["train_seconds"]), 0))
    final = (record.summary or {}).get("metric", {}).get("value")
    if final is not None and metric_name not in logged:
        out.append((metric_name, final, int((record.summary or {}).get("steps") or 0)))
    return out


def run_tags(record: RunRecord) -> dict[str, str]:
    entry = record.entry
    links = record.links()
    tags = {
        "autopilot.verdict": entry["verdict"],
        "autopilot.status": entry["status"],
        "autopilot.policy": entry["policy"],
        "autopilot.compared_to": entry["compared_to"] or "",
        "autopilot.generation": str(entry.get("generation") or ""),
        "autopilot.overrides": ", ".join(f"{k}={v!r}" for k, v in sorted(entry["overrides"].items())) or "baseline",
        "mlflow.note.content": description(record, links),
    }
    if entry.get("error"):
        tags["autopilot.error"] = entry["error"]
    tags |= {f"autopilot.link.{name}": uri for name, uri in links.items()}
    return tags


def description(record: RunRecord, links: dict[str, str]) -> str:
    """The run's description in MLflow's UI (markdown): verdict, rationale, and links to its files."""
    entry = record.entry
    lines = [f"**{entry['verdict']}** (run {record.run_id} of study {record.study}, policy `{entry['policy']}`)", ""]
    if entry.get("rationale"):
        lines += [entry["rationale"], ""]
    lines += [f"- [{name}]({uri})" for name, uri in links.items()]
    return "\n".join(lines)
