"""Where the project files come from: the copy inside an installed wheel, or the checkout the package runs from.

A wheel carries the files of a project (`paths.PROJECT_FILES`: Snakefile, rules/, config/, profiles/, envs/,
schemas/, examples/) as package data under autopilot/_project/ (setup.py puts them there when it builds); an
editable install or a source checkout has them at the top of the repository, the one copy that is edited.
`autopilot init` copies them into a new project, and the package validates every document against their
schemas/.

Usage:
    bundled.project_files() / "schemas"
"""

from __future__ import annotations

from pathlib import Path

from autopilot.errors import ConfigError

PACKAGED = Path(__file__).resolve().parent / "_project"  # in a wheel
CHECKOUT = Path(__file__).resolve().parents[2]  # src/autopilot/ -> the repository, in an editable install


def project_files() -> Path:
    """The folder that holds Snakefile, rules/, config/, profiles/, schemas/ and examples/."""
    for root in (PACKAGED, CHECKOUT):
        if (root / "Snakefile").is_file() and (root / "schemas").is_dir():
            return root
    raise ConfigError(f"this installation of autopilot has no project files: neither {PACKAGED} nor {CHECKOUT} "
                      f"holds a Snakefile and schemas/; reinstall it from a wheel or a source checkout")
