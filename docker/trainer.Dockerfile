# The trainer: CUDA PyTorch and the autopilot package with the `lm` extra (transformers, peft). Snakemake runs
# the training rule in it: `container_image` in the study config with `--sdm apptainer`, or profiles/kubernetes.
# Build from the repository root:  docker build -f docker/trainer.Dockerfile -t autopilot-trainer:0.1.0 .
# Every input is pinned: the base images by digest, every Python package by version and hash (docker/*.lock,
# written by docker/lock.sh), tini by the checksum of its release.

# The wheel of the package (pure Python), with the project files inside it (setup.py).
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

FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime@sha256:c8268a92a69bd500f8be0e665b2630ee006dadaf7bfbc24249141b15ff622755
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini as PID 1: it forwards the stop signal to `autopilot train`, which stops its trainer's process group
COPY docker/fetch_verified.py /tmp/
RUN python /tmp/fetch_verified.py https://github.com/krallin/tini/releases/download/v0.19.0/tini-amd64 \
        93dcc18adc78c65a028a84799ecf8ad40c936fdfc5f2a57b1acda5a8117fa82c /usr/local/bin/tini \
    && rm /tmp/fetch_verified.py

# the locked dependencies and the `lm` extra; torch and its CUDA packages are the base image's own (the lock
# was resolved against the same torch and leaves them out), then the package alone
COPY docker/trainer.lock /tmp/
RUN pip install --require-hashes --no-deps -r /tmp/trainer.lock && rm /tmp/trainer.lock
COPY --from=build /dist/ /tmp/dist/
# a user of its own (numeric, so that Kubernetes' runAsNonRoot can check it); Apptainer runs as the caller
RUN pip install --no-deps /tmp/dist/autopilot-*.whl \
    && rm -rf /tmp/dist \
    && useradd --create-home --uid 10001 --user-group autopilot \
    && install -d -o 10001 -g 10001 /workdir
USER 10001:10001

# Snakemake runs a job with the project as working directory (a bind mount, or /workdir in a pod)
WORKDIR /workdir

# SIGINT and SIGTERM alike make `autopilot train` stop its trainer's process group; the run resumes from
# its last checkpoint at the next invocation. SIGINT matches the controller's graceful signal.
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/tini", "--", "autopilot"]
CMD ["train", "--help"]
