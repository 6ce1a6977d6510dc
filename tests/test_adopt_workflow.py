"""The two unmodified example scripts run through the whole workflow: argparse + stdout, Hydra + TensorBoard."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from helpers import REPO, make_project, snakemake
from test_workflow import finished_runs

from autopilot import fsio
from autopilot.cli import main
from autopilot.ops.scaffold import QUICK_STUDY

FAST_JUDGE = QUICK_STUDY["judge"]


def example_project(tmp_path, study_file: str, **changes):
    root = make_project(tmp_path / "p")  # examples/ comes with the project, as `autopilot init` makes it
    study = yaml.safe_load((REPO / study_file).read_text())
    study.update(iterations=1, judge={**study["judge"], **FAST_JUDGE}, **changes)
    (root / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return root, study


def check_completed(runs) -> list[dict]:
    summaries = [fsio.read_json(r / "trainer_summary.json") for r in [*runs, runs[0] / "seeds" / "seed-1"]]
    for s in summaries:
        assert s["status"] == "completed", s["error"]
        assert 0.5 < s["metric"]["value"] <= 1 and len(s["per_example"]["values"]) == 450
    return summaries


@pytest.mark.slow
def test_an_argparse_script_that_prints_its_metrics(tmp_path):
    root, study = example_project(tmp_path, "examples/argparse_study.yaml", baseline={
        **yaml.safe_load((REPO / "examples/argparse_study.yaml").read_text())["baseline"], "epochs": 3})
    snakemake(root, "--configfile", "study.yaml")
    runs = finished_runs(root, "argparse_digits")
    assert len(runs) == 1
    summaries = check_completed(runs)
    log = (runs[0] / "train.log").read_text()
    assert "--batch_size 64 --epochs 3 --hidden 64 --lr 0.01 --optimizer adam --weight_decay 1e-05" in log
    assert (runs[0] / "seeds" / "seed-1" / "val_correct.json").exists()  # {run_dir} of the noise seed
    losses = [m["loss"] for m in fsio.iter_jsonl(runs[0] / "metrics.jsonl") if "loss" in m]
    assert len(losses) == 3 and losses[-1] < losses[0] and summaries[0]["steps"] == 3
    assert fsio.read_json(runs[0] / "verdict.json")["verdict"] == "baseline"
    export_and_read_back(root, "argparse_digits", summaries[0])


def export_and_read_back(root, study: str, summary: dict) -> None:
    """A real study's runs, read back from MLflow (file store: no database to build) and an Optuna journal."""
    pytest.importorskip("mlflow")
    import optuna
    from mlflow.tracking import MlflowClient

    from autopilot.ops.export.optuna_store import storage_of

    for args in (["mlflow", "--tracking-uri", f"file:{root}/mlruns"], ["optuna", "--storage", f"{root}/optuna.log"]):
        result = CliRunner().invoke(main, ["--root", str(root), "export", args[0], "--study", study, *args[1:]])
        assert result.exit_code == 0 and "exported 1 run(s)" in result.output, result.output
    client = MlflowClient(tracking_uri=f"file:{root}/mlruns")
    (run,) = client.search_runs([client.get_experiment_by_name(study).experiment_id])
    assert run.data.tags["autopilot.verdict"] == "baseline" and run.data.params["weight_decay"] == "1e-05"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert run.data.metrics["val_accuracy"] == summary["metric"]["value"]
    (trial,) = optuna.load_study(study_name=study, storage=storage_of(f"{root}/optuna.log")).get_trials()
    assert trial.value == pytest.approx(fsio.read_json(root / "runs" / study / "00001" / "verdict.json")["value"])
    assert trial.intermediate_values[3] == summary["metric"]["value"]


@pytest.mark.slow
def test_a_hydra_app_that_logs_to_tensorboard(tmp_path):
    pytest.importorskip("hydra")
    pytest.importorskip("tensorboard")
    root, study = example_project(tmp_path, "examples/hydra_train/study.yaml", baseline={
        **yaml.safe_load((REPO / "examples/hydra_train/study.yaml").read_text())["baseline"], "train.epochs": 3})
    snakemake(root, "--configfile", "study.yaml")
    runs = finished_runs(root, "hydra_digits")
    assert len(runs) == 1
    check_completed(runs)
    for run in runs:  # what the app itself composed is exactly what the guard passed
        hparams = fsio.read_json(run / "config.json")["hparams"]
        composed = yaml.safe_load((run / "hydra" / ".hydra" / "config.yaml").read_text())
        for key, value in hparams.items():
            got = composed
            for part in key.split("."):
                got = got[part]
            assert got == value and type(got) is type(value), (key, value, got)
    steps = [m for m in fsio.iter_jsonl(runs[0] / "metrics.jsonl") if "train/loss" in m]
    assert len(steps) == 3 * 22 and steps[-1]["step"] == 66  # every optimizer step of 3 epochs
    assert not (root / "outputs").exists()  # Hydra's outputs went into the run folder
