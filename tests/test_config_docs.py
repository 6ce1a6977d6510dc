"""config/README.md describes every setting of the study config, and is exactly what the schema gives."""

from __future__ import annotations

from click.testing import CliRunner
from helpers import REPO, make_project

from autopilot import config_docs, config_schema
from autopilot.cli import main


def test_the_committed_file_is_what_the_schema_gives():
    committed = (REPO / "config" / "README.md").read_text()
    assert committed == config_docs.render(), "config/README.md is stale: run `autopilot config docs` and commit it"


def test_every_setting_is_described_with_what_it_allows_and_its_default():
    text = config_docs.render()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    for path, node in config_schema.settings():
        key = f"`{'.'.join(path)}`"
        assert key in rows, f"{key} is missing from config/README.md"
        if "default" in node and not isinstance(node["default"], list):
            assert f"`{config_docs._literal(node['default'])}`" in rows[key]
        if "enum" in node:
            assert ", ".join(map(config_docs._literal, node["enum"])) in rows[key]  # true, not True
    for form in ("`type: float`", "`type: int`", "`type: categorical`"):  # the forms of a search_space entry
        assert form in text


def test_the_docs_command_writes_and_checks(tmp_path):
    root = make_project(tmp_path / "p")
    readme = root / "config" / "README.md"
    runner = CliRunner()
    assert runner.invoke(main, ["--root", str(root), "config", "docs", "--check"]).exit_code == 0
    readme.write_text(readme.read_text().replace("Name of the study", "Name"))
    stale = runner.invoke(main, ["--root", str(root), "config", "docs", "--check"])
    assert stale.exit_code == 1 and "run `autopilot config docs`" in stale.output
    assert "Name of the study" not in readme.read_text()  # --check writes nothing
    wrote = runner.invoke(main, ["--root", str(root), "config", "docs"])
    assert wrote.exit_code == 0 and readme.read_text() == config_docs.render()
