"""The sandbox of patched code, with real processes: no network, the project read-only but the writable folder,
sealed paths empty, no API keys, host processes out of sight, a memory limit the kernel enforces, a time limit.
Each layer this machine does not allow is skipped with the reason the sandbox itself records."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from autopilot.code import sandbox
from autopilot.errors import SandboxUnavailable

CAPS = sandbox.capabilities()
needs_mounts = pytest.mark.skipif(not CAPS.mounts, reason=f"no mount namespace here: {CAPS.why_not}")
needs_network_ns = pytest.mark.skipif(not CAPS.network_namespace, reason=f"no network namespace here: {CAPS.why_not}")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "runs" / "r1" / "records").mkdir(parents=True)
    (root / "runs" / "r1" / "records" / "config.json").write_text("{}")
    (root / "data" / "holdout").mkdir(parents=True)
    (root / "data" / "holdout" / "labels.csv").write_text("7,1,4\n")
    (root / "code.py").write_text("print('hi')\n")
    return root


def probe(project: Path, code: str, limit: float = 60, **policy) -> tuple[sandbox.Result, dict | None]:
    """Run Python `code` sandboxed; it may print one JSON line last, returned parsed."""
    run_dir = project / "runs" / "r1"
    settings = {"root": project, "writable": (run_dir,), "sealed": (project / "data" / "holdout",), **policy}
    result = sandbox.run([sys.executable, "-c", code], sandbox.Policy(**settings), "test", project, limit,
                         run_dir / "probe.log")
    last = result.output.strip().splitlines()[-1:] if result.output.strip() else []
    try:
        return result, json.loads(last[0]) if last else None
    except json.JSONDecodeError:
        return result, None


@needs_network_ns
def test_no_network_inside(project):
    result, seen = probe(project, """
import json, socket
try:
    socket.create_connection(("192.0.2.1", 80), timeout=3)
    print(json.dumps({"connected": True}))
except OSError as e:
    print(json.dumps({"connected": False, "errno": e.errno}))
""")
    assert seen == {"connected": False, "errno": 101}, result.output  # ENETUNREACH: no interface but loopback
    assert result.report["network"].startswith("off")


@needs_mounts
def test_the_project_is_read_only_but_the_run_folder_and_sealed_paths_are_empty(project):
    result, seen = probe(project, """
import json, os
out = {"sealed": os.listdir("data/holdout")}
for name, path in (("project", "code.py"), ("run", "runs/r1/out.txt"), ("records", "runs/r1/records/config.json")):
    try:
        with open(path, "w") as f:
            f.write("changed")
        out[name] = "written"
    except OSError as e:
        out[name] = e.strerror
try:
    open("data/holdout/labels.csv").read()
    out["labels"] = "read"
except OSError as e:
    out["labels"] = e.strerror
print(json.dumps(out))
""", readonly=(project / "runs" / "r1" / "records",))
    assert seen == {"sealed": [], "project": "Read-only file system", "run": "written",
                    "records": "Read-only file system", "labels": "No such file or directory"}, result.output
    assert (project / "code.py").read_text() == "print('hi')\n" and (project / "runs/r1/out.txt").exists()
    assert (project / "data/holdout/labels.csv").read_text() == "7,1,4\n"  # hidden, not touched
    assert result.report["sealed_hidden"] == [str(project / "data" / "holdout")]


def test_the_environment_is_an_allow_list_without_keys(project, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("AGENT_TOKEN", "tok-secret")
    monkeypatch.setenv("MY_SETTING", "1")
    code = "import json, os; print(json.dumps(sorted(os.environ)))"
    _, names = probe(project, code, env_names=("MY_SETTING", "ANOTHER_API_KEY"))
    assert "OPENAI_API_KEY" not in names and "AGENT_TOKEN" not in names and "MY_SETTING" in names
    assert {"HOME", "TMPDIR", "PATH"} <= set(names)
    _, names = probe(project, code, secret_names=("AGENT_TOKEN",))  # the agent CLI's own key, given by name
    assert "AGENT_TOKEN" in names and "OPENAI_API_KEY" not in names


@pytest.mark.skipif(not CAPS.pid_namespace, reason=f"no PID namespace here: {CAPS.why_not}")
def test_host_processes_and_their_environments_are_out_of_sight(project):
    _, seen = probe(project, "import json, os; print(json.dumps([p for p in os.listdir('/proc') if p.isdigit()]))")
    assert len(seen) <= 3  # the probe itself (pid 1) and what the jail left; the host has hundreds


@pytest.mark.skipif(CAPS.memory not in ("cgroup1", "cgroup2", "systemd"), reason=CAPS.memory_detail)
def test_the_memory_limit_is_enforced_by_the_kernel(project):
    result, _ = probe(project, "b = bytearray(400 << 20); b[::4096] = b'x' * len(b[::4096]); print('survived')",
                      memory_mb=128)
    assert "survived" not in result.output and not result.ok
    if CAPS.memory != "systemd":
        assert result.oom
    assert "128 MiB" in result.report["memory"]


def test_an_endless_loop_is_killed_at_the_time_limit(project):
    result, _ = probe(project, "while True:\n    pass\n", limit=2)
    assert result.returncode is None and 1.9 < result.seconds < 30
    assert "killed after the limit of 2 s" in result.output


def test_strict_refuses_to_start_without_a_layer(project, monkeypatch):
    monkeypatch.setattr(sandbox, "capabilities", lambda: sandbox.Capabilities(
        None, False, False, False, True, "none", "no cgroup here", {"namespaces": "unshare is not permitted"}))
    with pytest.raises(SandboxUnavailable, match="network namespace.*read-only mounts"):
        sandbox.prepare(["true"], sandbox.Policy(root=project, writable=(project,), strict=True), "trainer")
    launch = sandbox.prepare(["true"], sandbox.Policy(root=project, writable=(project,), memory_mb=64), "trainer")
    assert launch.argv[-1] == "true" and "unshare" not in launch.argv
    assert launch.report["network"].startswith("NOT isolated") and "a memory limit" in launch.report["missing"]
