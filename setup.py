"""Build hook: a wheel carries the project files (Snakefile, rules/, config/, profiles/, schemas/, examples/) as
package data under autopilot/_project/, so that an installed package validates against its schemas and
`autopilot init` can make a project. In the repository they stay where they are, the one copy that is edited;
an editable install reads them there. Everything else about the build is in pyproject.toml.
"""

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))
from autopilot.paths import PROJECT_FILES  # noqa: E402  (standard library only: the one list of them)


class BuildPyWithProjectFiles(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install finds them in the checkout (autopilot.bundled)
            return
        target = Path(self.build_lib) / "autopilot" / "_project"
        shutil.rmtree(target, ignore_errors=True)
        for name in PROJECT_FILES:
            source = HERE / name
            if source.is_dir():
                shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildPyWithProjectFiles})
