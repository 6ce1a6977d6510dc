"""The study config: closed schema, defaults from the schema only, clear errors naming the key."""

import pytest
import yaml
from helpers import REPO, make_project, snakemake

from autopilot import schemas
from autopilot.errors import ConfigError
from autopilot.study import check_config, fill_defaults


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_the_default_study_is_valid_and_gets_schema_defaults():
    config = check_config(default_config(), "config/config.yaml")
    assert config["budget"]["max_runs"] >= 1
    assert config["policy"] == "tpe"


def test_a_misspelled_key_is_named():
    config = default_config()
    config["iteratons"] = 3
    with pytest.raises(ConfigError, match="`iteratons`: not a setting; did you mean `iterations`"):
        check_config(config, "config/config.yaml")


def test_a_misspelled_nested_key_is_named():
    config = default_config()
    config["judge"]["alpah"] = 0.1
    with pytest.raises(ConfigError, match="alpah"):
        check_config(config, "config/config.yaml")


def test_cross_field_rules():
    config = default_config()
    config["search_space"]["lr"] = {"type": "float", "low": 0.1, "high": 0.01}
    with pytest.raises(ConfigError, match="low < high"):
        check_config(config, "c")
    config = default_config()
    config["search_space"]["depth"] = {"type": "int", "low": 1, "high": 3}
    with pytest.raises(ConfigError, match="no value in `baseline`"):
        check_config(config, "c")


def test_fill_defaults_does_not_touch_given_values():
    schema = schemas.load("config")
    filled = fill_defaults({"judge": {"alpha": 0.01}}, schema)
    assert filled["judge"]["alpha"] == 0.01 and filled["judge"]["confirm_seeds"] >= 1


def test_snakemake_names_a_misspelled_key(tmp_path):
    root = make_project(tmp_path / "p", iteratons=3)
    proc = snakemake(root, "-n", check=False)
    assert proc.returncode != 0
    assert "iteratons" in proc.stdout + proc.stderr
