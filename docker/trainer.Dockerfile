# The trainer: CUDA PyTorch and the autopilot package with the `lm` extra (transformers, peft). Snakemake runs
# the training rule in it: `container_image` in the study config with `--sdm apptainer`, or profiles/kubernetes.
# Build from the repository root:  docker build -f docker/trainer.Dockerfile -t autopilot-trainer:0.1.0 .
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/autopilot
COPY pyproject.toml README.md ./
COPY src ./src
# torch stays the base image's CUDA build: it satisfies the package's torch>=2.2, so pip leaves it alone.
# DL3013 takes the extra for a package name: this is the local package, whose ranges pyproject.toml sets.
# hadolint ignore=DL3013
RUN pip install ".[lm]"

# Snakemake runs a job with the project as working directory (a bind mount, or /workdir in a pod)
WORKDIR /workdir

# SIGINT and SIGTERM alike make `autopilot train` stop its trainer's process group; the run resumes from
# its last checkpoint at the next invocation. SIGINT matches the controller's graceful signal.
STOPSIGNAL SIGINT
ENTRYPOINT ["autopilot"]
CMD ["train", "--help"]
