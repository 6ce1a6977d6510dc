"""A study's config: loaded, given the schema's defaults, validated, and frozen into runs/<study>/study.json.

Defaults live in `schemas/config.schema.yaml` only; this module copies them in, so no default is
written twice. The Snakefile writes the effective config (config/config.yaml plus `--config` overrides) to
runs/<study>/study.json at the start of every invocation; every command of the loop reads that file.

Usage:
    study = Study.load(project, Path("config/config.yaml"))
    study = Study.from_study_dir(project, "digits_cnn")
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autopilot import apikeys, config_errors, fsio, schemas
from autopilot.config_errors import ConfigSource
from autopilot.errors import ConfigError
from autopilot.paths import ModelPaths, Project, StudyPaths
from autopilot.settings import StudySettings


def fill_defaults(obj: dict, schema: dict) -> dict:
    """Copy `default`s of the schema's properties into `obj` where missing, recursing into objects."""
    for key, sub in schema.get("properties", {}).items():
        if key not in obj and "default" in sub:
            obj[key] = copy.deepcopy(sub["default"])
        if sub.get("type") == "object" and "properties" in sub:
            if key not in obj and any("default" in s for s in sub["properties"].values()):
                obj[key] = {}
            if isinstance(obj.get(key), dict):
                fill_defaults(obj[key], sub)
    return obj


def check_config(config: Any, source: str | Path | ConfigSource) -> dict:
    """Validate a raw config and return it with defaults filled; ConfigError names each bad key, its file and
    line, what is allowed and a close match (autopilot.config_errors)."""
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: a study config must be a mapping of keys to values")
    apikeys.refuse_key_in_config(config, source)  # first: a schema error would quote a pasted key
    config = fill_defaults(unquoted_on(copy.deepcopy(config)), schemas.load("config"))
    config_errors.check(config, source)
    _check_cross_fields(config, source)
    return config


def unquoted_on(config: dict) -> dict:
    """`notify: {on: [...]}` as written: YAML 1.1 (PyYAML, Snakemake) reads an unquoted `on` key as `true`."""
    notify = config.get("notify")
    if isinstance(notify, dict) and True in notify and "on" not in notify:
        notify["on"] = notify.pop(True)
    return config


def _check_cross_fields(config: dict, source: str | Path | ConfigSource) -> None:
    if config["task"] == "command" and "command" not in config["trainer"]:
        raise config_errors.problem(source, ("trainer", "command"),
                                    "missing; task `command` needs `trainer: {command: [...]}`")
    for key, space in config["search_space"].items():
        if space["type"] in ("float", "int") and not space["low"] < space["high"]:
            raise config_errors.problem(source, ("search_space", key), f"`low < high` must hold, got {space}")
        if space["type"] in ("float", "int") and space.get("log") and space["low"] <= 0:
            raise config_errors.problem(source, ("search_space", key),
                                        f"a log range needs low > 0, got {space['low']}")
    for key in config["search_space"]:
        if key not in config["baseline"]:
            hint = config_errors.did_you_mean(key, config["baseline"])
            raise config_errors.problem(source, ("search_space", key), f"has no value in `baseline`{hint}")
    _check_code_mode(config, source)
    _check_continual(config, source)


def _check_continual(config: dict, source: str | Path | ConfigSource) -> None:
    """Mode continual: one champion trained further on queued data, one run at a time; the curriculum feeds it."""
    if config["curriculum"]["enabled"] and config["mode"] != "continual":
        raise config_errors.problem(source, ("curriculum", "enabled"), "the curriculum feeds a continual study: set "
                                    "`mode: continual` (or curriculum.enabled: false)")
    if config["mode"] != "continual":
        return
    needs = [(("task",), config["task"], "causal_lm", "continual training fine-tunes a causal LM"),
             (("data", "source"), config.get("data", {}).get("source"), "queue",
              "each run trains on the head of the dataset queue"),
             (("generation_size",), config["generation_size"], 1,
              "each run starts from the champion the run before it left"),
             (("registry", "lora"), config["registry"]["lora"], "merge",
              "the next run starts from the champion's weights as one folder")]
    for path, value, wanted, why in needs:
        if value != wanted:
            raise config_errors.problem(source, path, f"mode `continual` needs `{'.'.join(path)}: {wanted}` ({why}), "
                                        f"not {value!r}")
    names = [s["name"] for s in config["continual"]["eval_sets"]]
    clash = sorted({n for n in names if names.count(n) > 1 or n == "val"})
    if clash:
        raise config_errors.problem(source, ("continual", "eval_sets"), f"set names must be unique and not `val` "
                                    f"(data.val_file is the set `val`): {', '.join(clash)}")


def _check_code_mode(config: dict, source: str | Path | ConfigSource) -> None:
    code = config["code_mode"]
    if not code["enabled"]:
        return
    if config["task"] != "command":
        raise config_errors.problem(source, ("code_mode", "enabled"), "code_mode needs task `command` (the study's "
                                    f"own trainer, whose files a patch changes), not {config['task']!r}")
    if not code["files"]:
        raise config_errors.problem(source, ("code_mode", "files"), "code_mode.files is empty: list the globs of the "
                                    "files a patch may change, e.g. [train.py]")
    if "command" not in code["evaluator"]:
        raise config_errors.problem(source, ("code_mode", "evaluator", "command"), "code_mode.evaluator.command is "
                                    "missing: the sealed evaluator that scores the weights a trainer saved")
    if config["llm"]["backend"] == "command" and not config["llm"]["command"]:
        raise config_errors.problem(source, ("llm", "command"), "code_mode with llm.backend `command` needs "
                                    "llm.command (the agent CLI)")


def load_yaml(path: Path) -> Any:
    try:
        with Path(path).open(encoding="utf-8") as f:
            return yaml.load(f, Loader=schemas.SafeLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None


@dataclass(frozen=True)
class Study:
    project: Project
    config: dict

    @functools.cached_property
    def settings(self) -> StudySettings:
        """The config parsed once into frozen dataclasses: what the stages read."""
        return StudySettings.parse(self.config)

    @property
    def name(self) -> str:
        return self.settings.study

    @property
    def paths(self) -> StudyPaths:
        return self.project.study(self.name)

    @property
    def models(self) -> ModelPaths:
        return self.project.models(self.name)

    @property
    def metric_name(self) -> str:
        return self.settings.metric.name

    @property
    def maximize(self) -> bool:
        return self.settings.metric.maximize

    @property
    def search_space(self) -> dict:
        return self.config["search_space"]

    @classmethod
    def load(cls, project: Project, path: Path, overrides: dict | None = None) -> Study:
        raw = load_yaml(path) or {}
        if overrides:
            raw = {**raw, **overrides}
        return cls(project, check_config(raw, str(path)))

    @classmethod
    def from_study_dir(cls, project: Project, name: str) -> Study:
        path = project.study(name).effective_config
        if not path.exists():
            raise ConfigError(
                f"study {name!r} has no {path}: run the workflow once (snakemake -c1) to create it"
            )
        return cls(project, check_config(fsio.read_json(path), str(path)))

    def freeze(self) -> None:
        """Write the effective config to runs/<study>/study.json if it changed."""
        path = self.paths.effective_config
        text = fsio.dumps_json(self.config)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            fsio.atomic_write_text(path, text)
