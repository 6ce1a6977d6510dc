"""How patched code runs: a process tree that cannot reach the network, the project (but its own folder), the sealed
data or the API keys, and that the kernel stops at a memory limit.

Layers, each taken where this machine allows it and recorded either way (`Launch.report`, sandbox.json):
  * namespaces (util-linux `unshare`): a user namespace (root inside, no power outside), a network namespace with
    no interface but loopback, a PID namespace with its own /proc (host processes and their environments are out
    of sight; when the tree's first process ends, the kernel ends the rest), and a mount namespace in which the
    project is read-only except the writable folders, and each sealed path is hidden behind an empty mount;
  * `setpriv` drops every capability for good (bounding set) before the program starts: nothing inside can undo
    a mount;
  * memory: a cgroup of our own (v2 `memory.max`, or v1 `memory.limit_in_bytes`), else a `systemd-run --scope`
    with MemoryMax, else the container's own limit is recorded. Never RLIMIT_AS: CUDA maps far more address space
    than it uses and fails under it;
  * the environment is built from an allow-list (ALLOWED_ENV + the study's names); a name that looks like a secret
    is refused even when listed; HOME and TMPDIR point into the writable folder.
The caller adds the rest: its own process group (start_new_session) and a wall-clock limit.

Usage:
    launch = prepare(argv, Policy(root=..., writable=(run_dir,), sealed=(...), memory_mb=4096), purpose="trainer")
    proc = subprocess.Popen(launch.argv, env=launch.env, cwd=root, start_new_session=True)
    ...; launch.close()         # ends what is left in its cgroup; launch.oom_killed() says whether the limit hit
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from autopilot.errors import SandboxUnavailable

log = logging.getLogger(__name__)

ALLOWED_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONUNBUFFERED",
               "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
               "NVIDIA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "SOURCE_DATE_EPOCH")
ALLOWED_PREFIXES = ("LC_",)
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.IGNORECASE)
PROBE_SECONDS = 10.0
CGROUP_ROOT = Path("/sys/fs/cgroup")

# Runs as the first process of the new namespaces: the mounts, then the program with every capability dropped.
# The working directory is entered again after the mounts: until then it still refers to the folder on the old,
# writable mount, through which relative paths would reach what the new mounts hide.
JAIL_HEAD = 'set -e\nhere="$(pwd)"\ncd /\n'
JAIL_TAIL = 'cd "$here"\nexec "$@"\n'


@dataclass(frozen=True)
class Policy:
    """What one sandboxed process tree may do."""

    root: Path  # the project: read-only inside, but for `writable`
    writable: tuple[Path, ...] = ()  # folders it may write (its run folder, status/); the first holds HOME and TMPDIR
    readonly: tuple[Path, ...] = ()  # paths inside a writable folder it may not change (its proposal, code, seeds)
    sealed: tuple[Path, ...] = ()  # paths it must not see (the validation labels)
    network: bool = False
    memory_mb: int | None = None
    env_names: tuple[str, ...] = ()  # extra environment variables passed (the study's code_mode.env)
    set_env: tuple[tuple[str, str], ...] = ()  # variables set for it (PYTHONPATH of its tree, thread counts)
    secret_names: tuple[str, ...] = ()  # variables passed although they hold secrets (the agent's own API key)
    strict: bool = False  # a missing layer is an error (SandboxUnavailable) instead of a line in the report


@dataclass(frozen=True)
class Capabilities:
    """What this machine allows, probed once per process."""

    unshare: list[str] | None  # the unshare flags that work (user+mount+net+pid, or less), or None
    mounts: bool
    network_namespace: bool
    pid_namespace: bool
    setpriv: bool
    memory: str  # cgroup2 | cgroup1 | systemd | none
    memory_detail: str
    why_not: dict[str, str] = field(default_factory=dict)


@dataclass
class Launch:
    """A prepared start: the argv and environment to use, what was and was not available, and the cgroup to clean."""

    argv: list[str]
    env: dict[str, str]
    report: dict
    cgroup: Path | None = None
    cgroup_version: int | None = None

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the tree for the memory limit."""
        if self.cgroup is None:
            return False
        name = "memory.events" if self.cgroup_version == 2 else "memory.oom_control"
        try:
            text = (self.cgroup / name).read_text()
        except OSError:
            return False
        found = re.search(r"^oom_kill (\d+)", text, re.MULTILINE)
        return bool(found and int(found.group(1)) > 0)

    def close(self) -> None:
        """End every process left in the cgroup (a child that left the process group) and remove the cgroup."""
        if self.cgroup is None or not self.cgroup.exists():
            return
        for _ in range(50):
            pids = _cgroup_pids(self.cgroup)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        try:
            self.cgroup.rmdir()
        except OSError as e:
            log.warning("cannot remove cgroup %s: %s", self.cgroup, e)


def _cgroup_pids(cgroup: Path) -> list[int]:
    try:
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    except OSError:
        return []


# --- probing -----------------------------------------------------------------------------------------------
def _works(argv: list[str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()[-300:]


@functools.cache
def capabilities() -> Capabilities:
    why: dict[str, str] = {}
    unshare = shutil.which("unshare")
    flags = None
    if unshare is None:
        why["namespaces"] = "util-linux `unshare` is not installed"
    else:
        candidates = [["--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "--kill-child",
                       "--mount-proc"]]
        if os.geteuid() == 0:
            candidates.append(["--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"])
        candidates += [["--user", "--map-root-user", "--net"], ["--net"]]
        for c in candidates:
            ok, err = _works([unshare, *c, "true"])
            if ok:
                flags = c
                break
            why.setdefault("namespaces", f"`unshare {' '.join(c)}` failed: {err}")
    mounts = flags is not None and "--mount" in flags
    if flags is not None and not mounts:
        why.setdefault("mounts", "a mount namespace is not permitted here")
    setpriv = shutil.which("setpriv") is not None
    if not setpriv:
        why["capabilities"] = "util-linux `setpriv` is not installed: capabilities are not dropped"
    memory, detail = _probe_memory()
    return Capabilities(flags, mounts, flags is not None and "--net" in flags,
                        flags is not None and "--pid" in flags, setpriv, memory, detail, why)


def _own_cgroup() -> tuple[str | None, str | None]:
    """This process's cgroup path in the v2 hierarchy and in the v1 memory hierarchy."""
    v2 = v1 = None
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            if number == "0" and controllers == "":
                v2 = path
            elif "memory" in controllers.split(","):
                v1 = path
    except OSError:
        pass
    return v2, v1


def _v2_dir() -> Path | None:
    v2, _ = _own_cgroup()
    if v2 is None:
        return None
    for mount in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        if (mount / "cgroup.controllers").exists():
            return mount / v2.lstrip("/")
    return None


def _v1_dir() -> Path | None:
    _, v1 = _own_cgroup()
    mount = CGROUP_ROOT / "memory"
    return None if v1 is None or not (mount / "memory.limit_in_bytes").exists() else mount / v1.lstrip("/")


def _try_cgroup(version: int, limit_bytes: int) -> Path | None:
    """A new child cgroup with a memory limit, or None where that is not permitted."""
    parent = _v2_dir() if version == 2 else _v1_dir()
    if parent is None:
        return None
    if version == 2 and "memory" not in _read(parent / "cgroup.subtree_control").split():
        return None  # the "no internal processes" rule: only a delegated subtree can hand memory to a child
    child = parent / f"autopilot-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
    except OSError:
        return None
    try:
        if version == 2:
            (child / "memory.max").write_text(str(limit_bytes))
            _write_if_exists(child / "memory.swap.max", "0")
        else:
            (child / "memory.limit_in_bytes").write_text(str(limit_bytes))
            _write_if_exists(child / "memory.memsw.limit_in_bytes", str(limit_bytes))
    except OSError:
        child.rmdir()
        return None
    return child


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write_if_exists(path: Path, value: str) -> None:
    if path.exists():
        try:
            path.write_text(value)
        except OSError:
            pass  # swap accounting may be off: the memory limit alone still holds


def _systemd_run() -> list[str] | None:
    tool = shutil.which("systemd-run")
    if tool is None:
        return None
    scope = [tool, "--scope", "--quiet", "--collect"] if os.geteuid() == 0 else [tool, "--user", "--scope", "--quiet"]
    ok, _ = _works([*scope, "true"])
    return scope if ok else None


def _probe_memory() -> tuple[str, str]:
    for version in (2, 1):
        child = _try_cgroup(version, 1 << 30)
        if child is not None:
            child.rmdir()
            return f"cgroup{version}", f"a cgroup v{version} of our own under {child.parent}"
    if _systemd_run() is not None:
        return "systemd", "systemd-run --scope -p MemoryMax"
    return "none", container_limit()


def container_limit() -> str:
    """The memory limit this process already lives under (a container's), in words."""
    v2, v1 = _v2_dir(), _v1_dir()
    for path in (v2 and v2 / "memory.max", v1 and v1 / "memory.limit_in_bytes"):
        value = _read(path).strip() if path else ""
        if value and value != "max" and int(value) < (1 << 60):
            return f"no cgroup of our own can be made; the container's limit of {int(value) >> 20} MiB applies"
    return "no cgroup of our own can be made and no container limit was found: no memory limit"


# --- one launch ----------------------------------------------------------------------------------------------
def environment(policy: Policy, home: Path) -> dict[str, str]:
    """The allow-listed environment: no API keys, HOME and TMPDIR in the writable folder."""
    names = set(ALLOWED_ENV) | {n for n in policy.env_names if not SECRET_NAME.search(n)}
    env = {k: v for k, v in os.environ.items()
           if k in names or k.startswith(ALLOWED_PREFIXES) or k in policy.secret_names}
    env.update(HOME=str(home), TMPDIR=str(home), PYTHONUNBUFFERED="1")
    env.update(dict(policy.set_env))
    return env


def jail_script(policy: Policy) -> tuple[str, list[str]]:
    """The shell commands run inside the new mount namespace, and the sealed paths that exist (and are hidden)."""
    q = shlex.quote
    lines = [JAIL_HEAD]
    for w in policy.writable:
        lines.append(f"mount --bind {q(str(w))} {q(str(w))}")  # its own mount: stays writable under the read-only root
    for r in policy.readonly:
        if r.exists():
            lines += [f"mount --bind {q(str(r))} {q(str(r))}", f"mount -o remount,bind,ro {q(str(r))}"]
    root = str(policy.root)
    lines += [f"mount --rbind {q(root)} {q(root)}", f"mount -o remount,bind,ro {q(root)}"]
    hidden = []
    for s in policy.sealed:
        if s.is_dir():
            lines.append(f"mount -t tmpfs -o size=4k,mode=0555 tmpfs {q(str(s))}")
        elif s.exists():
            lines.append(f"mount --bind /dev/null {q(str(s))}")
        else:
            continue
        hidden.append(str(s))
    return "\n".join(lines) + "\n" + JAIL_TAIL, hidden


def prepare(argv: list[str], policy: Policy, purpose: str) -> Launch:
    """The sandboxed start of `argv`; SandboxUnavailable when the policy is strict and a layer is missing."""
    caps = capabilities()
    home = policy.writable[0] / ".sandbox-home" if policy.writable else policy.root
    home.mkdir(parents=True, exist_ok=True)
    report = {"purpose": purpose, "process_group": True, "environment": "allow-list", "missing": []}
    inner = list(argv)
    if caps.setpriv:
        inner = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--", *inner]
    report["capabilities_dropped"] = caps.setpriv
    out = inner
    if caps.unshare is not None:
        flags = [f for f in caps.unshare if policy.network is False or f != "--net"]
        if caps.mounts:
            script, hidden = jail_script(policy)
            out = ["unshare", *flags, "--", "sh", "-c", script, "jail", *inner]
            report["sealed_hidden"] = hidden
        else:
            out = ["unshare", *flags, "--", *inner] if flags else inner
    report["network"] = _network_line(policy, caps)
    report["filesystem"] = (f"project {policy.root} read-only but {', '.join(map(str, policy.writable)) or 'nothing'}; "
                            "sealed paths hidden" if caps.mounts else
                            f"NOT isolated: {caps.why_not.get('mounts') or caps.why_not.get('namespaces')}")
    report["pid_namespace"] = caps.pid_namespace
    launch = Launch(out, environment(policy, home), report)
    _limit_memory(launch, policy, caps)
    report["env_names"] = sorted(launch.env)
    _note_missing(report, policy, caps)
    if policy.strict and report["missing"]:
        raise SandboxUnavailable(f"code_mode.strict_sandbox: the {purpose}'s sandbox lacks "
                                 + "; ".join(report["missing"]) + " on this machine")
    return launch


def _network_line(policy: Policy, caps: Capabilities) -> str:
    if policy.network:
        return "allowed (by the settings)"
    if caps.network_namespace:
        return "off: a network namespace with loopback only"
    return f"NOT isolated: {caps.why_not.get('namespaces', 'no network namespace')}"


def _limit_memory(launch: Launch, policy: Policy, caps: Capabilities) -> None:
    if policy.memory_mb is None:
        launch.report["memory"] = "no limit of our own (code_mode.memory_mb is null)"
        return
    limit = policy.memory_mb << 20
    for version in (2, 1):
        if caps.memory == f"cgroup{version}":
            child = _try_cgroup(version, limit)
            if child is not None:
                launch.cgroup, launch.cgroup_version = child, version
                launch.argv = ["sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "join",
                               str(child / "cgroup.procs"), *launch.argv]
                launch.report["memory"] = f"{policy.memory_mb} MiB, cgroup v{version} {child}"
                return
    scope = _systemd_run() if caps.memory == "systemd" else None
    if scope is not None:
        launch.argv = [*scope, "-p", f"MemoryMax={policy.memory_mb}M", "-p", "MemorySwapMax=0", "--", *launch.argv]
        launch.report["memory"] = f"{policy.memory_mb} MiB, systemd-run scope"
        return
    launch.report["memory"] = f"NOT limited by us: {caps.memory_detail}"


def _note_missing(report: dict, policy: Policy, caps: Capabilities) -> None:
    if not policy.network and not caps.network_namespace:
        report["missing"].append("the network namespace")
    if not caps.mounts:
        report["missing"].append("the read-only mounts and sealed paths")
    if policy.memory_mb is not None and report["memory"].startswith("NOT"):
        report["missing"].append("a memory limit")
    if not caps.setpriv:
        report["missing"].append("dropping capabilities")


@dataclass(frozen=True)
class Result:
    returncode: int | None  # None: killed at the time limit
    output: str  # the tail of its output
    seconds: float
    oom: bool
    report: dict

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(argv: list[str], policy: Policy, purpose: str, cwd: Path, limit: float, log_path: Path,
        stdin: bytes | None = None, tail_chars: int = 3000) -> Result:
    """Run `argv` sandboxed in its own process group, output to `log_path`, killed past `limit` seconds."""
    launch = prepare(argv, policy, purpose)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("wb") as out:
        try:
            proc = subprocess.Popen(launch.argv, cwd=cwd, env=launch.env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as e:
            launch.close()
            return Result(127, f"cannot start {argv[0]!r}: {e.strerror}", 0.0, False, launch.report)
        try:
            proc.communicate(stdin, timeout=limit)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            kill_group(proc)
            code = None
        finally:
            oom = launch.oom_killed()
            launch.close()
    output = log_path.read_bytes()[-tail_chars:].decode("utf-8", errors="replace")
    if code is None:
        output += f"\n[autopilot: killed after the limit of {limit:g} s]"
    return Result(code, output, round(time.monotonic() - started, 3), oom, {**launch.report, "time_limit": limit})


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of `proc` (a sandboxed tree has nothing to save) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
