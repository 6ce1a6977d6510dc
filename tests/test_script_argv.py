"""An unmodified script's argv: placeholders, flags for argparse and overrides for Hydra, read back exactly."""

from __future__ import annotations

import argparse

import pytest

from autopilot import schemas
from autopilot.errors import ConfigError
from autopilot.settings import Trainer
from autopilot.study import fill_defaults
from autopilot.train.script_argv import check_command, quote_hydra, render_flag, render_hydra, script_argv

FLOATS = [1e-05, 0.00001, 0.30000000000000004, 1e16, 1e-300, 123456789.125, -0.5, -1e-05, 0.0, 2.0]
STRINGS = ["adam", "a b", "a,b", "it's", "1e-05", "true", "null", "x=y", "[1]", "${oc.env:HOME}", "back\\slash",
           "end\\", "quote\\'s", "", "ünï", "--not-a-flag", "{braces}"]


def config(hparams: dict, seed: int = 7) -> dict:
    return {"hparams": hparams, "seed": seed}


def trainer(command: list[str], args: str) -> Trainer:
    """The study's trainer settings, with the schema's defaults for the rest."""
    filled = fill_defaults({"trainer": {"command": command, "args": args}}, schemas.load("config"))
    return Trainer.parse(filled["trainer"])


def test_flags_read_back_exactly_by_argparse():
    hparams = {f"f{i}": v for i, v in enumerate(FLOATS)} | {f"s{i}": v for i, v in enumerate(STRINGS)} | {
        "epochs": 3, "neg": -4, "amp": True, "compile": False, "init": None, "layers": [64, 32]}
    parser = argparse.ArgumentParser()
    for key, value in hparams.items():
        if isinstance(value, bool):
            parser.add_argument(f"--{key}", action="store_true")
        elif isinstance(value, list):
            parser.add_argument(f"--{key}", type=int, nargs="+")
        elif value is None:
            parser.add_argument(f"--{key}", default=None)
        else:
            parser.add_argument(f"--{key}", type=type(value))
    argv = script_argv(trainer(["train.py"], "flags"), config(hparams), "c.json", "runs/s/00001")
    assert argv[0] == "train.py"
    assert vars(parser.parse_args(argv[1:])) == hparams


def test_floats_are_rendered_by_their_shortest_exact_repr():
    assert render_flag("lr", 0.00001) == ["--lr", "1e-05"]
    assert render_flag("lr", 0.1 + 0.2) == ["--lr", "0.30000000000000004"]
    assert render_flag("shift", -0.5) == ["--shift=-0.5"]  # never taken for an option
    assert render_hydra(1e16) == "1e+16" and render_hydra(3) == "3" and render_hydra(3.0) == "3.0"


def test_hydra_overrides_read_back_exactly(tmp_path):
    pytest.importorskip("hydra")
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    hparams = {f"f{i}": v for i, v in enumerate(FLOATS)} | {f"s{i}": v for i, v in enumerate(STRINGS)} | {
        "model.width": 64, "model.name": "mlp", "amp": True, "compile": False, "init": None, "layers": [64, 32, "x"]}
    top = sorted({k.split(".")[0] for k in hparams})
    (tmp_path / "config.yaml").write_text("".join(f"{k}: null\n" for k in top if k != "model")
                                          + "model: {width: 8, name: cnn}\n")
    argv = script_argv(trainer(["app.py"], "hydra"), config(hparams), "c.json", "runs/s/00001")
    assert argv[-1] == "hydra.run.dir='runs/s/00001/hydra'"
    with initialize_config_dir(config_dir=str(tmp_path), version_base=None):
        cfg = OmegaConf.to_container(compose("config", overrides=argv[1:-1]), resolve=True)
    for key, value in hparams.items():
        got = cfg
        for part in key.split("."):
            got = got[part]
        assert got == value and type(got) is type(value), (key, value, got)


def test_quoting_of_hydra_strings():
    assert quote_hydra("it's") == r"'it\'s'"
    assert quote_hydra("end\\") == "'end\\\\'"
    assert quote_hydra("${x}") == r"'\${x}'"


def test_placeholders_are_filled_and_not_appended_again():
    settings = trainer(["python", "t.py", "--lr={lr}", "--out", "{run_dir}", "--seed", "{seed}", "{{x}}"], "flags")
    argv = script_argv(settings, config({"lr": 1e-05, "epochs": 3, "batch_size": 64}), "r/config.json", "r")
    assert argv == ["python", "t.py", "--lr=1e-05", "--out", "r", "--seed", "7", "{x}",
                    "--batch_size", "64", "--epochs", "3"]


def test_hydra_placeholders_use_hydra_rendering_and_a_given_run_dir_is_kept():
    settings = trainer(["app.py", "seed={seed}", "opt={opt}", "hydra.run.dir={run_dir}/h"], "hydra")
    argv = script_argv(settings, config({"opt": "adam", "lr": 0.001}), "r/config.json", "r")
    assert argv == ["app.py", "seed=7", "opt='adam'", "hydra.run.dir=r/h", "lr=0.001"]


def test_args_none_appends_nothing():
    settings = trainer(["t.py", "{config}", "{run_dir}"], "none")
    assert script_argv(settings, config({"lr": 0.1}), "r/config.json", "r") == ["t.py", "r/config.json", "r"]


def test_an_unknown_placeholder_or_an_unpassable_value_is_a_config_error():
    with pytest.raises(ConfigError, match=r"trainer.command\[1\] '--lr=\{lrr\}' names \{lrr\}"):
        check_command(trainer(["t.py", "--lr={lrr}"], "flags"), {"lr": 0.1}, "study.yaml")
    with pytest.raises(ConfigError, match="baseline.model is a mapping"):
        check_command(trainer(["t.py"], "flags"), {"model": {"width": 3}}, "study.yaml")
    check_command(trainer(["t.py", "{config}", "{lr}", "{{lit}}"], "none"), {"lr": 0.1}, "study.yaml")
