"""The argv of a study's own training script: placeholders filled, hyperparameters appended as its parser wants them.

`trainer.command` may name `{config}` (the run's config.json), `{run_dir}` (its folder), `{seed}` and any
hyperparameter (`{lr}`, `{model.width}`); `{{` and `}}` stand for literal braces. `trainer.args` then appends every
hyperparameter that no placeholder already placed, sorted by key:

    flags   --key value       (argparse, click); true -> `--key`, false and null -> nothing, a list -> `--key a b`,
                              a value that starts with `-` -> `--key=-0.5` (so that it is not read as an option)
    hydra   key=value         Hydra's override grammar: strings quoted and escaped, lists as [a,b], null, true;
                              plus hydra.run.dir=<run_dir>/hydra unless the command sets it, so that the app's
                              outputs (.hydra/, its log) land in the run folder instead of outputs/<date>/
    none    nothing           (the script reads config.json, or the command places what it needs)

Values are rendered so that the parser reads back exactly the value the guard passed: a float by its shortest
round-trip repr (1e-05, 0.30000000000000004, 1e+16), which argparse's float() and Hydra's grammar both read as
that same float; an int as an int. Mappings cannot be passed (use dotted keys: `model.width`).

Usage:
    argv = script_argv(study.settings.trainer, config, config_path="runs/s/00001/config.json", run_dir="runs/s/00001")
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from autopilot.errors import ConfigError
from autopilot.settings import Trainer

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")
RUN_PLACEHOLDERS = ("config", "run_dir", "seed")
HYDRA_OUTPUT_SUBDIR = "hydra"  # under the run folder: Hydra's own log would otherwise clash with train.log
HYDRA_KEY = re.compile(r"^[A-Za-z_+~][A-Za-z0-9_.\-/@]*$")
QUOTE_OR_END = re.compile(r"(\\*)('|\Z)")


def placeholders(arg: str) -> list[str]:
    """Names of the placeholders in one argv item."""
    return [m.group(1) for m in PLACEHOLDER.finditer(arg) if m.group(1)]


def script_argv(trainer: Trainer, config: dict, config_path: str, run_dir: str) -> list[str]:
    """The script's argv for one seed of a run: placeholders filled, then the hyperparameters `trainer.args` appends."""
    style = trainer.args
    values = {**config["hparams"], "config": config_path, "run_dir": run_dir, "seed": config["seed"]}
    placed: set[str] = set()
    argv = []
    for arg in trainer.command:
        argv.append(fill(arg, values, style))
        placed.update(placeholders(arg))
    rest = sorted(k for k in config["hparams"] if k not in placed)
    if style == "flags":
        argv += [item for key in rest for item in render_flag(key, config["hparams"][key])]
    elif style == "hydra":
        argv += [render_override(key, config["hparams"][key]) for key in rest]
        if not any(a.startswith("hydra.run.dir=") for a in argv):
            argv.append(render_override("hydra.run.dir", f"{run_dir}/{HYDRA_OUTPUT_SUBDIR}"))
    return argv


def fill(arg: str, values: dict, style: str) -> str:
    """One argv item with its placeholders replaced by rendered values."""

    def one(m: re.Match) -> str:
        if m.group(1) is None:
            return m.group(0)[0]  # {{ or }}
        value = values[m.group(1)]
        return render_hydra(value) if style == "hydra" and m.group(1) not in ("config", "run_dir") else render(value)

    return PLACEHOLDER.sub(one, arg)


def render(value: Any) -> str:
    """A value as plain text: strings as they are, floats by repr, true/false/null, lists as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


def render_flag(key: str, value: Any) -> list[str]:
    """`--key value` argv items of one hyperparameter (argparse and click conventions)."""
    flag = f"--{key}"
    if value is True:
        return [flag]
    if value is False or value is None:
        return []
    if isinstance(value, list):
        return [flag, *map(render, value)] if value else []
    text = render(value)
    return [f"{flag}={text}"] if text.startswith("-") else [flag, text]


def render_override(key: str, value: Any) -> str:
    return f"{key}={render_hydra(value)}"


def render_hydra(value: Any) -> str:
    """A value in Hydra's override grammar, read back by Hydra (and OmegaConf) as exactly this value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(map(render_hydra, value)) + "]"
    if isinstance(value, str):
        return quote_hydra(value)
    raise ConfigError(f"cannot pass {value!r} to a Hydra app")


def quote_hydra(text: str) -> str:
    """A single-quoted Hydra string. Hydra keeps backslashes except before a quote or the end (there they are
    halved), and OmegaConf would resolve `${...}` later, so `${` is escaped as `\\${`."""
    text = text.replace("${", "\\${")
    return "'" + QUOTE_OR_END.sub(lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text) + "'"


def check_command(trainer: Trainer, baseline: Mapping, source: str) -> None:
    """ConfigError for a placeholder that names nothing, or a hyperparameter the chosen style cannot pass."""
    known = set(baseline) | set(RUN_PLACEHOLDERS)
    for i, arg in enumerate(trainer.command):
        unknown = [name for name in placeholders(arg) if name not in known]
        if unknown:
            raise ConfigError(
                f"{source}: trainer.command[{i}] {arg!r} names {', '.join('{' + u + '}' for u in unknown)}, which is "
                f"neither {{config}}, {{run_dir}}, {{seed}} nor a key of `baseline`; write {{{{ and }}}} for literal "
                "braces"
            )
    if trainer.args == "none":
        return
    for key, value in baseline.items():
        if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
            raise ConfigError(
                f"{source}: baseline.{key} is a mapping or nested list, which trainer.args: {trainer.args} cannot "
                f"pass; use one dotted key per value (e.g. {key}.width), or args: none and a placeholder"
            )
        if trainer.args == "hydra" and not HYDRA_KEY.match(key):
            raise ConfigError(f"{source}: baseline key {key!r} is not a Hydra config path (letters, digits, _ . -)")
