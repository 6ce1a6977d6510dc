"""`autopilot export mlflow|optuna`: every finished run, read back with MLflow's and Optuna's own clients; a second
export adds only new runs."""

from __future__ import annotations

import io
import json
import shutil
import sys
import wsgiref.util

import pytest
from click.testing import CliRunner
from helpers import make_project
from ops_study import entry, write_history

from autopilot import fsio
from autopilot.cli import main

HISTORY = [
    entry("00001", "baseline", 0.80, policy="baseline", seed_values=[0.79, 0.80, 0.81]),
    entry("00002", "improved", 0.84, seed_values=[0.83, 0.85], params={"lr": 0.00125}, overrides={"lr": 0.00125}),
    entry("00003", "failed", None),
    entry("00004", "skipped", None, status="skipped"),
    entry("00005", "inconclusive", 0.81, params={"lr": 0.5}),  # outside today's space (lr <= 0.02)
]


@pytest.fixture
def root(tmp_path):
    root = make_project(tmp_path / "p")
    write_history(root, HISTORY)
    run = root / "runs" / "digits_cnn" / "00002"
    hparams = {"lr": 0.00125, "batch_size": 64, "optimizer": "adam", "epochs": 6, "weight_decay": 1e-05}
    fsio.atomic_write_json(run / "config.json", {"hparams": hparams})
    with (run / "metrics.jsonl").open("a") as f:  # the metric per epoch, next to the loss per step
        for step, acc in ((10, 0.7), (20, 0.8), (30, 0.84)):
            f.write(json.dumps({"step": step, "time": step * 0.1, "val_accuracy": acc}) + "\n")
    fsio.atomic_write_json(run / "trainer_summary.json", {"metric": {"value": 0.84}, "steps": 30,
                                                          "checkpoint": "runs/digits_cnn/00002/checkpoint/step-30"})
    return root


def export(root, *args: str) -> str:
    result = CliRunner().invoke(main, ["--root", str(root), "export", *args])
    assert result.exit_code == 0, result.output
    return result.output


def add_run(root, run_id: str) -> None:
    write_history(root, [*HISTORY, entry(run_id, "regressed", 0.7)])


@pytest.fixture(scope="module")
def empty_mlflow_db(tmp_path_factory):
    """MLflow builds its tables with some 50 migrations (seconds on a busy machine): once, then copied."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "empty.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(params=["sqlite", "file"])
def tracking_uri(request, tmp_path, empty_mlflow_db):
    if request.param == "file":
        return f"file:{tmp_path}/mlruns"
    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db"


def mlflow_runs(uri: str) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("digits_cnn")
    return {r.data.tags["autopilot.run_id"]: r for r in client.search_runs([experiment.experiment_id])}


def test_mlflow_holds_every_run_with_params_series_verdict_and_links(root, tracking_uri):
    from mlflow.tracking import MlflowClient

    out = export(root, "mlflow", "--tracking-uri", tracking_uri)
    assert "exported 5 run(s) (00001..00005)" in out
    runs = mlflow_runs(tracking_uri)
    assert sorted(runs) == ["00001", "00002", "00003", "00004", "00005"]
    run = runs["00002"]
    assert run.data.params == {"lr": "0.00125", "batch_size": "64", "optimizer": "adam", "epochs": "6",
                               "weight_decay": "1e-05"}
    assert run.data.tags["autopilot.verdict"] == "improved" and run.data.tags["autopilot.policy"] == "tpe"
    assert run.info.status == "FINISHED" and run.info.run_name == "digits_cnn/00002"
    assert run.data.tags["autopilot.link.checkpoint"].endswith("/runs/digits_cnn/00002/checkpoint/step-30")
    assert run.data.tags["autopilot.link.metrics.jsonl"].startswith("file:///")
    assert "[metrics.jsonl](file:///" in run.data.tags["mlflow.note.content"]
    assert run.data.metrics["autopilot/seed_mean"] == 0.84 and run.data.metrics["autopilot/delta"] == 0.04
    client = MlflowClient(tracking_uri=tracking_uri)
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in loss] == list(range(1, 31)) and loss[0].value > loss[-1].value
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [
        (10, 0.7), (20, 0.8), (30, 0.84)]
    seeds = client.get_metric_history(run.info.run_id, "autopilot/seed_value")
    assert sorted((m.step, m.value) for m in seeds) == [(0, 0.83), (1, 0.85)]
    assert runs["00003"].info.status == "FAILED" and "CUDA error" in runs["00003"].data.tags["autopilot.error"]
    assert runs["00004"].info.status == "KILLED"


def test_mlflow_export_again_adds_only_new_runs_and_redoes_an_interrupted_one(root, tracking_uri):
    export(root, "mlflow", "--tracking-uri", tracking_uri)
    first = {k: r.info.run_id for k, r in mlflow_runs(tracking_uri).items()}
    assert "nothing to export: MLflow experiment 'digits_cnn'" in export(root, "mlflow", "--tracking-uri",
                                                                         tracking_uri)
    add_run(root, "00006")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.set_tag(first["00005"], "autopilot.export", "incomplete")  # as an export killed mid-run leaves it
    assert "exported 2 run(s) (00005..00006)" in export(root, "mlflow", "--tracking-uri", tracking_uri)
    now = {k: r.info.run_id for k, r in mlflow_runs(tracking_uri).items()}
    assert sorted(now) == [f"0000{i}" for i in range(1, 7)]
    assert all(now[k] == first[k] for k in first if k != "00005") and now["00005"] != first["00005"]


def test_a_missing_mlflow_is_named_with_the_install_command(root, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    result = CliRunner().invoke(main, ["--root", str(root), "export", "mlflow"])
    assert result.exit_code == 1
    assert f"{sys.executable} -m pip install 'mlflow>=2.16'" in result.output


@pytest.fixture(params=["sqlite", "journal"])
def storage(request, tmp_path):
    return f"sqlite:///{tmp_path}/optuna.db" if request.param == "sqlite" else str(tmp_path / "optuna.log")


def load(storage: str):
    import optuna

    from autopilot.ops.export.optuna_store import storage_of

    return optuna.load_study(study_name="digits_cnn", storage=storage_of(storage))


def test_optuna_holds_every_run_as_a_trial(root, storage):
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    assert "exported 5 run(s)" in export(root, "optuna", "--storage", storage)
    study = load(storage)
    assert study.direction.name == "MAXIMIZE"
    trials = study.get_trials()
    assert [t.user_attrs["autopilot_run_id"] for t in trials] == ["00001", "00002", "00003", "00004", "00005"]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.PRUNED, TrialState.COMPLETE]
    assert [t.value for t in trials] == [0.80, 0.84, None, None, 0.81]
    assert trials[1].params == {"lr": 0.00125}
    assert trials[1].distributions["lr"] == FloatDistribution(0.0005, 0.02, log=True)
    assert trials[1].intermediate_values == {10: 0.7, 20: 0.8, 30: 0.84}
    assert trials[1].user_attrs["verdict"] == "improved" and trials[1].user_attrs["seed_values"] == [0.83, 0.85]
    assert trials[1].user_attrs["run_dir"] == "runs/digits_cnn/00002"
    assert trials[4].params == {} and trials[4].user_attrs["params_outside_space"] == {"lr": 0.5}
    assert study.best_trial.user_attrs["autopilot_run_id"] == "00002"
    assert trials[0].datetime_complete > trials[0].datetime_start


def test_optuna_export_again_adds_only_new_runs(root, storage):
    export(root, "optuna", "--storage", storage)
    assert "nothing to export" in export(root, "optuna", "--storage", storage)
    add_run(root, "00006")
    out = export(root, "optuna", "--storage", storage)
    assert "exported 1 run(s) (00006..00006) to Optuna study 'digits_cnn'" in out and "5 were there already" in out
    assert [t.user_attrs["autopilot_run_id"] for t in load(storage).get_trials()][-2:] == ["00005", "00006"]


def test_an_optuna_study_of_the_other_direction_is_refused(root, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path}/o.db"
    optuna.create_study(study_name="digits_cnn", storage=storage, direction="minimize")
    result = CliRunner().invoke(main, ["--root", str(root), "export", "optuna", "--storage", storage])
    assert result.exit_code == 1 and "is to minimize, but val_accuracy is to maximize" in result.output


def test_optuna_dashboard_lists_the_exported_study(root, tmp_path):
    """The dashboard's own API (its WSGI app, called in-process) shows the study and its trials."""
    dashboard = pytest.importorskip("optuna_dashboard")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    export(root, "optuna", "--storage", storage)
    app = dashboard.wsgi(storage)

    def get(path: str) -> dict:
        environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
        wsgiref.util.setup_testing_defaults(environ)
        status = []
        body = b"".join(app(environ, lambda s, h, exc_info=None: status.append(s)))
        assert status[0].startswith("200"), (status, body[:300])
        return json.loads(body)

    studies = get("/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["digits_cnn"]
    detail = get(f"/api/studies/{studies[0]['study_id']}")
    assert len(detail["trials"]) == 5 and detail["best_trials"][0]["number"] == 1
    assert {"key": "verdict", "value": "improved"} in detail["trials"][1]["user_attrs"]
