"""The warm command server: same output and exit status as a fresh process, signals and death passed on,
never stale code, private to its user."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import VENV_BIN, env, make_project
from ops_study import make_slow_project, training, wait_for

from autopilot import console
from autopilot.paths import Project
from autopilot.warm import commands, protocol

WARM = re.compile(r"pid (\d+), forked by the warm command server \(pid (\d+)\)")


@pytest.fixture
def server_env():
    """An environment of its own (so a server of its own), with servers that idle out fast."""
    marker = uuid.uuid4().hex[:8]
    e = {**env(), "NUMEXPR_MAX_THREADS": marker, "AUTOPILOT_POOL_IDLE_SECONDS": "20"}
    yield e
    for pid in server_pids(e):
        os.kill(pid, signal.SIGTERM)


def server_pids(e: dict) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "autopilot.warm.commands"], capture_output=True, text=True).stdout.split()
    marker = f"NUMEXPR_MAX_THREADS={e['NUMEXPR_MAX_THREADS']}".encode()
    pids = []
    for pid in map(int, out):
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                pids.append(pid)
        except OSError:
            pass
    return pids


def cli(root: Path, e: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "autopilot"), *args], cwd=root, env=e, capture_output=True, text=True,
                          timeout=120)


def start_server(root: Path, e: dict) -> Path:
    """The first warm command starts the server (and runs in its own process); wait until it listens."""
    cli(root, e, "propose", "--dry-run")
    path = commands.socket_path(e)
    wait_for(lambda: protocol.listening(path), timeout=30, what="the command server to listen")
    return Path(path)



def without_time(text: str) -> str:
    return re.sub(r'"created_at": "[^"]*"', '"created_at": ...', text)


def warm_pids(stderr: str) -> tuple[int, int] | None:
    """(command pid, server pid) when the command says it ran warm (it does so with -v)."""
    m = WARM.search(stderr)
    return (int(m.group(1)), int(m.group(2))) if m else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize(("argv", "name"), [
    (["judge", "--run", "00001"], "judge"),
    (["--root", "/x", "-v", "journal", "--run", "1"], "journal"),
    (["--root=/x", "train"], "train"),
    (["-v"], None),
    (["--help"], None),
    (["status"], "status"),
])
def test_the_console_script_finds_the_command(argv, name):
    assert console.command_name(argv) == name


def test_only_the_loops_commands_run_warm(monkeypatch):
    monkeypatch.delenv("AUTOPILOT_NO_WARMSTART", raising=False)
    assert console.runs_warm(["propose", "--run", "00001"])
    assert not console.runs_warm(["status"])
    assert not console.runs_warm(["judge", "--help"])
    monkeypatch.setenv("AUTOPILOT_NO_WARMSTART", "1")
    assert not console.runs_warm(["propose", "--run", "00001"])


def test_a_warm_command_prints_what_a_fresh_process_prints(project, server_env):
    cold = cli(project, {**server_env, "AUTOPILOT_NO_WARMSTART": "1"}, "propose", "--dry-run")
    assert cold.returncode == 0, cold.stderr
    start_server(project, server_env)
    warm = cli(project, server_env, "-v", "propose", "--dry-run")
    assert warm.returncode == 0, warm.stderr
    assert without_time(warm.stdout) == without_time(cold.stdout)
    child, server = warm_pids(warm.stderr)
    assert server in server_pids(server_env)
    # the child reports its exit status, then exits: under load the client may hear it first
    wait_for(lambda: not alive(child), timeout=10, what="the warm command's process to end")


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["guard", "--run", "00042"], 1, "Error: "),              # an expected failure: one line, exit 1
    (["judge"], 2, "Missing option '--run'"),                  # a usage error: exit 2
])
def test_a_warm_command_fails_as_a_fresh_process_fails(project, server_env, argv, code, message):
    cold = cli(project, {**server_env, "AUTOPILOT_NO_WARMSTART": "1"}, *argv)
    start_server(project, server_env)
    warm = cli(project, server_env, "-v", *argv)
    assert cold.returncode == warm.returncode == code
    assert message in cold.stderr and message in warm.stderr
    assert "Traceback" not in warm.stderr
    assert cold.stderr.strip().splitlines()[-1] == warm.stderr.strip().splitlines()[-1]
    if argv[0] == "guard":
        assert warm_pids(warm.stderr) is not None


def test_the_server_and_its_socket_are_private(project, server_env):
    path = start_server(project, server_env)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700 and path.parent.stat().st_uid == os.getuid()


def test_other_interpreter_settings_get_a_server_of_their_own(project, server_env):
    path = start_server(project, server_env)
    other = {**server_env, "OMP_NUM_THREADS": "1" if server_env.get("OMP_NUM_THREADS") != "1" else "2"}
    assert Path(commands.socket_path(other)) != path
    other_path = start_server(project, other)
    first = warm_pids(cli(project, server_env, "-v", "propose", "--dry-run").stderr)
    second = warm_pids(cli(project, other, "-v", "propose", "--dry-run").stderr)
    assert first and second and first[1] != second[1]
    os.kill(second[1], signal.SIGTERM)
    wait_for(lambda: not other_path.exists(), timeout=10, what="the other server to remove its socket")


def test_a_changed_package_retires_the_server(project, server_env):
    start_server(project, server_env)
    [old] = server_pids(server_env)
    source = Path(protocol.PACKAGE_DIR) / "train" / "tasks" / "__init__.py"
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        declined = cli(project, server_env, "-v", "propose", "--dry-run")
        assert declined.returncode == 0 and warm_pids(declined.stderr) is None  # ran in its own process
        wait_for(lambda: not alive(old), timeout=10, what="the stale server to exit")
        wait_for(lambda: server_pids(server_env) and protocol.listening(commands.socket_path(server_env)),
                 timeout=30, what="a fresh server")
        fresh = warm_pids(cli(project, server_env, "-v", "propose", "--dry-run").stderr)
        assert fresh and fresh[1] != old
    finally:
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_an_idle_server_exits_and_removes_its_socket(project, server_env):
    # idle for 3 s: with 1 s, a loaded machine saw the server come and go before it was seen listening
    e = {**server_env, "AUTOPILOT_POOL_IDLE_SECONDS": "3"}
    path = start_server(project, e)
    wait_for(lambda: not path.exists() and not server_pids(e), timeout=15, what="the idle server to exit")


def slow_run(tmp_path: Path, e: dict) -> Path:
    """A guarded run 00001 whose trainer takes a minute unless stopped."""
    root = make_slow_project(tmp_path / "p", steps=1200, step_seconds=0.05)
    for step in ("propose", "guard"):
        proc = cli(root, e, step, "--run", "00001")
        assert proc.returncode == 0, proc.stderr
    return root


def trainer_pids(root: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "slow_trainer.py runs/digits_cnn/00001"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split() if Path(f"/proc/{p}/cwd").resolve() == root.resolve()]


def start_train(root: Path, e: dict, log: Path) -> subprocess.Popen:
    with log.open("w") as err:
        proc = subprocess.Popen([str(VENV_BIN / "autopilot"), "-v", "train", "--run", "00001"], cwd=root, env=e,
                                stdout=subprocess.DEVNULL, stderr=err)
    wait_for(training(root, "00001"), timeout=60, what="run 00001 to train")
    return proc


@pytest.fixture
def warm_training(tmp_path, server_env) -> tuple[Path, subprocess.Popen, Path]:
    """`autopilot -v train` of a slow run, run warm and training: the project, the client, its stderr."""
    start_server(make_project(tmp_path / "warmup"), server_env)
    root = slow_run(tmp_path, server_env)
    log = tmp_path / "train.err"
    return root, start_train(root, server_env, log), log


@pytest.mark.slow
def test_a_signal_to_the_client_reaches_the_warm_command(warm_training):
    root, proc, log = warm_training
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    text = log.read_text()
    assert warm_pids(text) is not None, text  # it ran warm
    assert "stopped by SIGTERM" in text  # the supervisor in the server's child got the signal
    wait_for(lambda: not trainer_pids(root), timeout=15, what="the trainer's process group to be killed")


@pytest.mark.slow
def test_a_warm_command_dies_with_its_client(warm_training):
    root, proc, log = warm_training
    child, server = warm_pids(log.read_text())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    try:
        wait_for(lambda: not alive(child), timeout=10, what="the warm command to die with its client")
        assert alive(server)  # the server serves on
    finally:
        for pid in trainer_pids(root):  # a trainer outlives its killed supervisor, warm or not
            os.kill(pid, signal.SIGKILL)


def pool_pids(root: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"autopilot.warm.trainers cnn_digits {root}"], capture_output=True, text=True)
    pids = {int(p) for p in out.stdout.split()}
    return [p for p in pids if Path(f"/proc/{p}/stat").exists()
            and int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]) not in pids]  # not trainers


@pytest.mark.slow
def test_a_workflow_warms_up_the_processes_its_jobs_then_use(tmp_path, server_env):
    root = make_project(tmp_path / "p")
    proc = subprocess.run([str(VENV_BIN / "snakemake"), "-c2", "--profile", "profiles/local", "--config",
                           "iterations=2"], cwd=root, env=server_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "autopilot: warming up the command server" in proc.stderr
    assert "autopilot: warming up the cnn_digits trainer pool" in proc.stderr
    # the jobs found them (same key: the environment Snakemake gives its jobs) and started no others
    assert len(server_pids(server_env)) == 1
    assert len(pool_pids(root)) == 1
    for pid in pool_pids(root):
        os.kill(pid, signal.SIGTERM)


def test_on_a_cluster_jobs_start_fresh_and_nothing_is_warmed_up(project, monkeypatch):
    from autopilot.study import Study
    from autopilot.workflow import hooks
    from autopilot.workflow.plan import plan_runs

    monkeypatch.delenv("AUTOPILOT_NO_WARMSTART", raising=False)
    study = Study.load(Project(project), project / "config" / "config.yaml")
    cluster = fake_workflow(local_exec=False, touch=False)
    assert hooks.on_start(cluster, plan_runs(study, 1), study) == []
    assert os.environ["AUTOPILOT_NO_WARMSTART"] == "1"  # what the submitted jobs inherit


def fake_workflow(**attributes) -> SimpleNamespace:
    """What the hooks read of Snakemake's workflow object: no --sdm, no rules."""
    return SimpleNamespace(deployment_settings=SimpleNamespace(deployment_method=()), rules=[], **attributes)


def test_nothing_is_warmed_up_without_runs_to_train(project, monkeypatch):
    from autopilot.study import Study
    from autopilot.workflow import hooks
    from autopilot.workflow.plan import plan_runs

    monkeypatch.delenv("AUTOPILOT_NO_WARMSTART", raising=False)
    study = Study.load(Project(project), project / "config" / "config.yaml")
    local = fake_workflow(local_exec=True, touch=False)
    assert hooks.on_start(local, plan_runs(study, 0), study) == []
    assert hooks.on_start(fake_workflow(local_exec=True, touch=True), plan_runs(study, 1), study) == []
    assert "AUTOPILOT_NO_WARMSTART" not in os.environ


def test_the_rate_limiters_timer_does_not_hold_up_the_exit():
    from autopilot.workflow import hooks

    timer = threading.Timer(600, lambda: None)
    timer.start()
    hooks.finish_without_waiting()
    timer.join(timeout=5)
    assert not timer.is_alive()
