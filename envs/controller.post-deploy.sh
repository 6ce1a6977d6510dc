#!/usr/bin/env bash
# Snakemake runs this once, in the new environment and from the working directory (the project root): install the
# autopilot package without dependencies (the environment file has them) and without build isolation (setuptools
# is in the environment: no index needed). $AUTOPILOT_PACKAGE (a wheel or a source folder) when set; else this
# project when it is a source checkout, editable (the package then reads schemas/ and rules/ from it).
set -euo pipefail
if [ -n "${AUTOPILOT_PACKAGE:-}" ]; then
    python -m pip install --quiet --no-deps --no-build-isolation "$AUTOPILOT_PACKAGE"
elif [ -f pyproject.toml ] && [ -d src/autopilot ]; then
    python -m pip install --quiet --no-deps --no-build-isolation --editable .
else
    echo "autopilot: $(pwd) is not a source checkout of autopilot, so the conda environment cannot install it from" \
         "here: set AUTOPILOT_PACKAGE to an autopilot wheel (pip wheel --no-deps <checkout>) and run again" >&2
    exit 1
fi
