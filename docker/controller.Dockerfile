# The controller: Snakemake, the autopilot package and its LLM client on a CPU-only Python. It runs the loop
# (`autopilot daemon`), trains on its own CPU or submits training to a cluster (profiles/slurm, kubernetes).
# Build from the repository root:  docker build -f docker/controller.Dockerfile -t autopilot-controller:0.1.0 .
FROM python:3.11.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /autopilot

# torch's CPU wheels first: the package's open torch range would otherwise pull the multi-GB CUDA build
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.5.1

# the package (its LLM client is `requests`, a dependency) and the executor plugins of profiles/
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . snakemake-executor-plugin-slurm==2.8.0 snakemake-executor-plugin-kubernetes==0.5.1 \
        snakemake-storage-plugin-fs==1.1.3

# the workflow; a study's state lives in volumes, so the container can be replaced at any time
COPY Snakefile ./
COPY rules ./rules
COPY schemas ./schemas
COPY config ./config
COPY profiles ./profiles
VOLUME ["/autopilot/runs", "/autopilot/inbox", "/autopilot/queue", "/autopilot/control", "/autopilot/status"]

# `docker stop` sends SIGINT: the daemon finishes the current run, then exits (give it time: --stop-timeout)
STOPSIGNAL SIGINT
ENTRYPOINT ["autopilot"]
CMD ["daemon"]
