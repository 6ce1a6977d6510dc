"""Commands about the study config: check a config as the workflow does; write config/README.md from the schema."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path

import click
import yaml

from autopilot.cli import domain_errors, main, pass_project
from autopilot.paths import Project

CONFIG_KEY = re.compile(r"[a-zA-Z_][\w-]*\w$")  # what snakemake's --config accepts as a key


@main.group(name="config")
def config_group() -> None:
    """Check a study config, or write config/README.md (every setting) from schemas/config.schema.yaml."""


@config_group.command(name="check")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--config", "entries", multiple=True, metavar="KEY=VALUE",
              help="Override a setting as snakemake's --config does (repeatable), e.g. --config iterations=5.")
@click.option("--full", is_flag=True,
              help="Under each problem, the schema of that key (for an unknown key, of the level it is in) and "
                   "jsonschema's own message. AUTOPILOT_CONFIG_ERRORS=full does the same for every command "
                   "and for snakemake.")
@pass_project
@domain_errors
def check_cmd(project: Project, files: tuple[Path, ...], entries: tuple[str, ...], full: bool) -> None:
    """Check a study config against schemas/config.schema.yaml and its cross-setting rules, as the workflow does.

    FILES are merged in order, then --config overrides, like `snakemake --configfile FILES --config ...`
    (default: config/config.yaml). Each problem names the key, the file and line (or --config), what is
    allowed and, for a misspelled key or value, the closest match. Exit status 1 when the config is invalid.
    """
    from autopilot import config_errors
    from autopilot.study import check_config, load_yaml

    files = files or (project.default_config,)
    overrides = parse_overrides(entries)
    raw: dict = {}
    for file in files:
        merge(raw, load_yaml(file) or {})
    merge(raw, overrides)
    source = config_errors.ConfigSource(files, overrides)
    try:
        config = check_config(raw, source)
    except config_errors.ConfigProblems as e:
        raise click.ClickException(config_errors.render(e.source, e.problems, full=full or None)) from None
    click.echo(f"{source}: a valid study config (study {config['study']}, task {config['task']}, "
               f"policy {config['policy']}, {len(config['search_space'])} searched keys)")


@config_group.command(name="docs")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write. Default: config/README.md of the project.")
@click.option("--check", "check_only", is_flag=True,
              help="Write nothing; exit 1 if the file differs from what the schema gives (for CI).")
@pass_project
@domain_errors
def docs_cmd(project: Project, out: Path | None, check_only: bool) -> None:
    """Write config/README.md, which describes every setting of the study config, from the schema.

    The schema (schemas/config.schema.yaml) is the only source: edit a description or default there, then
    run this command. A test fails when the committed file differs from what this command writes.
    """
    from autopilot import config_docs, fsio

    out = out or project.config_readme
    text = config_docs.render()
    current = out.read_text(encoding="utf-8") if out.exists() else None
    if check_only:
        if current != text:
            raise click.ClickException(f"{out} is not what schemas/config.schema.yaml gives: run `autopilot config "
                                       f"docs` and commit it")
        click.echo(f"{out} is up to date")
    elif current == text:
        click.echo(f"{out} is up to date")
    else:
        fsio.atomic_write_text(out, text)
        click.echo(f"wrote {out}")


def parse_overrides(entries: tuple[str, ...]) -> dict:
    """`KEY=VALUE` strings as snakemake's --config reads them: int, float, True/False, YAML (as strings), text."""
    config: dict = {}
    for entry in entries:
        key, sep, text = entry.partition("=")
        if not sep or not CONFIG_KEY.match(key):
            raise click.BadParameter(f"{entry!r}: give KEY=VALUE with KEY a setting name", param_hint="--config")
        merge(config, {key: _value(text)})
    return config


def _value(text: str):
    if text == "":
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    if text in ("True", "False"):
        return text == "True"
    try:
        return yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        return text


def merge(config: dict, overrides: Mapping) -> dict:
    """Nested update, as snakemake's update_config: a mapping merges into a mapping, anything else replaces."""
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(config.get(key), dict):
            merge(config[key], value)
        else:
            config[key] = copy.deepcopy(value)
    return config
