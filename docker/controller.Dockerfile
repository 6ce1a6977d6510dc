# The controller: Snakemake, the autopilot package and its LLM client on a CPU-only Python. It runs the loop
# (`autopilot daemon`), trains on its own CPU or submits training to a cluster (profiles/slurm, kubernetes).
# Build from the repository root:  docker build -f docker/controller.Dockerfile -t autopilot-controller:0.1.0 .
# Every input is pinned: the base image by digest, every Python package by version and hash (docker/*.lock,
# written by docker/lock.sh), tini by the checksum of its release.

# The wheel of the package, with the project files inside it (setup.py), built apart from the image.
FROM python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5 AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY docker/build.lock docker/
RUN pip install --require-hashes -r docker/build.lock
COPY pyproject.toml setup.py MANIFEST.in README.md Snakefile ./
COPY src ./src
COPY rules ./rules
COPY config ./config
COPY profiles ./profiles
COPY schemas ./schemas
COPY envs ./envs
COPY examples ./examples
RUN pip wheel --no-deps --no-build-isolation -w /dist .

FROM python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini as PID 1: it forwards `docker stop`'s signal to autopilot and reaps the processes Snakemake leaves
COPY docker/fetch_verified.py /tmp/
RUN python /tmp/fetch_verified.py https://github.com/krallin/tini/releases/download/v0.19.0/tini-amd64 \
        93dcc18adc78c65a028a84799ecf8ad40c936fdfc5f2a57b1acda5a8117fa82c /usr/local/bin/tini \
    && rm /tmp/fetch_verified.py

# the locked dependencies (torch's CPU build comes from the PyTorch index), then the package alone
COPY docker/controller.lock /tmp/
RUN pip install --require-hashes --no-deps --extra-index-url https://download.pytorch.org/whl/cpu \
        -r /tmp/controller.lock \
    && rm /tmp/controller.lock
COPY --from=build /dist/ /tmp/dist/
# a user of its own (numeric, so that Kubernetes' runAsNonRoot can check it) owns the project folder
RUN pip install --no-deps /tmp/dist/autopilot-*.whl \
    && rm -rf /tmp/dist \
    && useradd --create-home --uid 10001 --user-group autopilot \
    && install -d -o 10001 -g 10001 /autopilot
USER 10001:10001

# the project, from the package itself (`autopilot init`); a study's state lives in volumes, so the container
# can be replaced at any time (a bind mount must be writable by uid 10001)
WORKDIR /autopilot
RUN autopilot init /autopilot && mkdir control status
VOLUME ["/autopilot/runs", "/autopilot/inbox", "/autopilot/queue", "/autopilot/control", "/autopilot/status"]

# `docker stop` sends SIGINT: the daemon finishes the current run, then exits (give it time: --stop-timeout)
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/tini", "--", "autopilot"]
CMD ["daemon"]
