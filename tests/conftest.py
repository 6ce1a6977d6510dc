"""Fixtures shared by the tests: a throw-away project to run real studies in, and the tiny local language model.
Helpers that are not fixtures are in helpers.py and lm_helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_project
from lm_helpers import build_tiny_model


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny Qwen3 and its tokenizer, built once per session (lm_helpers.build_tiny_model)."""
    return build_tiny_model(tmp_path_factory.mktemp("lm") / "tiny-lm")
