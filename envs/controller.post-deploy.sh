#!/usr/bin/env bash
# Snakemake runs this once, in the new environment and from the working directory (the project root): install
# this checkout's autopilot package, editable (it reads schemas/ beside its source), without dependencies (the
# environment file has them) and without build isolation (setuptools is in the environment: no index needed).
set -euo pipefail
python -m pip install --quiet --no-deps --no-build-isolation --editable .
