"""`autopilot monitor`: the JSON endpoints, and the live page in a real Chromium."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import VENV_BIN, env, make_project
from ops_study import Dom, chromium, entry, write_history

from autopilot import fsio
from autopilot.cli import main
from autopilot.ops import monitor, report
from autopilot.paths import Project
from autopilot.study import Study

HISTORY = [
    entry("00001", "baseline", 0.80, policy="baseline"),
    entry("00002", "improved", 0.84),
    entry("00003", "failed", None),
    entry("00004", "inconclusive", 0.83),
]
CURVE = [{"step": s, "loss": round(3.0 / (1 + 0.05 * s), 5)} for s in range(1, 121)]


@pytest.fixture
def study(tmp_path) -> Study:
    """Run 00005 is training its seed 1 at step 120 of 400; two files wait in the queue."""
    root = make_project(tmp_path / "p")
    write_history(root, HISTORY)
    seed = root / "runs" / "digits_cnn" / "00005" / "seeds" / "seed-1"
    seed.mkdir(parents=True)
    (seed / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in CURVE))
    fsio.atomic_write_json(root / "status" / "status.json", {
        "phase": "train", "study": "digits_cnn", "run": "00005", "seed_index": 1, "step": 120, "total_steps": 400,
        "loss": CURVE[-1]["loss"], "eta_seconds": 95.0, "heartbeat": time.time()})
    for priority in ("high", "low"):
        (root / "queue" / priority).mkdir(parents=True)
        (root / "queue" / priority / f"0000000000001-0000-{priority}.jsonl").write_text("{}\n")
    return Study.load(Project(root), root / "config" / "config.yaml")


@pytest.fixture
def served(study):
    server = monitor.make_server(study, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_the_endpoints_serve_status_history_and_the_current_runs_curve(served, study):
    code, kind, body = get(served + "api/status")
    snap = json.loads(body)
    assert code == 200 and kind == "application/json"
    assert (snap["live"]["run"], snap["live"]["step"], snap["queue"]["high"], snap["best"]["run_id"]) == \
        ("00005", 120, 1, "00002")
    runs = json.loads(get(served + "api/history")[2])["runs"]
    assert [r["value"] for r in runs] == [e["value"] for e in HISTORY]
    assert runs == report.run_points(HISTORY)
    curve = json.loads(get(served + "api/curve")[2])
    assert (curve["run_id"], curve["seed_index"]) == ("00005", 1)
    assert curve["points"] == [[m["step"], m["loss"]] for m in CURVE]
    code, kind, page = get(served)
    assert code == 200 and kind.startswith("text/html") and "metricChart" in page
    assert get(served + "nope")[0] == 404


def get_with_host(url: str, host: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("host", ["evil.example.com:8765", "evil.example.com", "127.0.0.1.evil.example.com",
                                  "localhost.evil.example.com:80", "192.168.1.5:8765", "[::2]:8765"])
def test_a_foreign_host_header_is_refused_against_dns_rebinding(served, host):
    code, body = get_with_host(served + "api/status", host)
    assert code == 403 and "not this machine's loopback name" in body["error"]
    assert get_with_host(served, host)[0] == 403


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:9000", "LOCALHOST", "[::1]:8765", "127.0.0.1"])
def test_loopback_host_headers_are_served_whatever_the_port_of_a_tunnel(served, host):
    code, body = get_with_host(served + "api/status", host)
    assert code == 200 and body["study"] == "digits_cnn"


@pytest.mark.parametrize("content, says", [
    ('{"phase": "train", "study": "digits_cnn", "run": "00005", "seed_index": 0, "step": NaN, "heartbeat": 1}',
     "step: nan is not a finite number"),
    ('{"phase": "train", "study": "digits_cnn", "run": "00005", "seed_index": 0, "step": 3, "loss": NaN, '
     '"heartbeat": Infinity}', "loss: nan is not a finite number; heartbeat: inf is not a finite number"),
    ('{"phase": "train", "study": "digits_cnn", "run": "00005", "seed_index": 0, "step": 3, "heartbeat": "soon"}',
     "heartbeat: 'soon' is not of type 'number'"),
    ('{"phase": "train", "study": "digits_cnn", "run": 5, "seed_index": "one", "step": 3, "heartbeat": 1}',
     "run: 5 is not of type 'string'; seed_index: 'one' is not of type 'integer'"),
    ('{"phase": "dancing", "study": "digits_cnn", "run": "00005", "seed_index": 0, "step": 3, "heartbeat": 1}',
     "phase: 'dancing' is not one of"),
    ('["not", "an", "object"]', "(top level): ['not', 'an', 'object'] is not of type 'object'"),
    ('{"phase": "tra', "not valid JSON"),
])
def test_a_malformed_status_json_is_reported_field_by_field_not_a_500(served, study, content, says):
    study.project.status.write_text(content)
    code, body = get_with_host(served + "api/status", "127.0.0.1")
    assert code == 200, body
    assert body["live"]["problem"].startswith("status/status.json") and says in body["live"]["problem"]
    assert body["live"]["active"] is False and "step" not in body["live"]
    assert get_with_host(served + "api/curve", "127.0.0.1") == (200, {"run_id": None, "seed_index": None,
                                                                      "points": []})
    result = CliRunner().invoke(main, ["--root", str(study.project.root), "status"], catch_exceptions=False)
    assert result.exit_code == 0 and "unknown: status/status.json is malformed" in result.output


def test_the_status_schema_knows_every_phase_a_trainer_writes():
    from autopilot import schemas
    from autopilot.enums import Phase

    assert set(schemas.load("status")["properties"]["phase"]["enum"]) == {p.value for p in Phase}


def test_an_error_in_an_endpoint_is_a_json_500_that_names_it(served, monkeypatch):
    monkeypatch.setattr(monitor, "history_data", lambda study: 1 / 0)
    code, body = get_with_host(served + "api/history", "127.0.0.1")
    assert code == 500 and body["error"] == "/api/history: ZeroDivisionError: division by zero"


def test_it_binds_to_localhost_only(study):
    server = monitor.make_server(study, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


def signal_state(pid: int) -> str:
    """The blocked and ignored signal masks of a process (to say why a signal did nothing)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return "; ".join(line for line in lines if line.startswith(("SigBlk", "SigIgn", "State")))


@pytest.mark.parametrize("inherited", ["nothing", "sigint_ignored"])
def test_the_command_prints_its_address_and_stops_on_ctrl_c(study, inherited):
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if inherited == "sigint_ignored" else None
    proc = subprocess.Popen([str(VENV_BIN / "autopilot"), "monitor", "--port", "0"], cwd=study.project.root,
                            env=env(), stdout=subprocess.PIPE, text=True, preexec_fn=ignore)  # as `monitor &`
    line = proc.stdout.readline()
    assert line.startswith("monitor: http://127.0.0.1:")
    url = line.split()[1]
    assert json.loads(get(url + "api/status")[2])["study"] == "digits_cnn"
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=30) == 0
    except subprocess.TimeoutExpired:
        state = signal_state(proc.pid)
        proc.kill()
        pytest.fail(f"the monitor did not stop on SIGINT within 30 s ({state})")


def test_a_busy_port_is_a_clear_error(study):
    first = monitor.make_server(study, port=0)
    try:
        port = first.server_address[1]
        proc = subprocess.run([str(VENV_BIN / "autopilot"), "monitor", "--port", str(port)], cwd=study.project.root,
                              env=env(), capture_output=True, text=True, timeout=30)
        assert proc.returncode == 1 and f"cannot serve on 127.0.0.1:{port}" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        first.server_close()


@pytest.mark.browser
def test_the_live_page_draws_the_current_run_and_the_study_in_chromium(served, study, tmp_path):
    shot = tmp_path / "monitor.png"
    dom = Dom(chromium(served, tmp_path / "chromium", screenshot=shot, wait_ms=5000))
    body = next(e for e in dom.elements if e["tag"] == "body")
    assert int(body["attrs"]["data-refreshes"]) >= 2  # it refreshed by itself (every 2 s)
    assert dom.text("phase") == "train" and dom.text("run") == "00005 · seed 1" and dom.text("step") == "120 / 400"
    assert dom.text("loss") == f"{CURVE[-1]['loss']:.4f}"
    assert dom.text("best-run") == "00002" and dom.text("best-value") == "0.8400"
    assert "hidden" in dom.by_id("stale")["attrs"]
    curve = dom.by_class("curve", "path")
    assert len(curve) == 1 and curve[0]["attrs"]["data-run"] == "00005"
    assert int(curve[0]["attrs"]["data-points"]) == len(CURVE)
    assert float(curve[0]["attrs"]["data-last"]) == CURVE[-1]["loss"]
    points = {e["attrs"]["data-run"]: float(e["attrs"]["data-value"]) for e in dom.by_class("run-point", "circle")}
    assert points == {e["run_id"]: e["value"] for e in HISTORY if e["value"] is not None}
    assert [float(v) for v in dom.by_class("best-line", "path")[0]["attrs"]["data-values"].split(",")] == \
        [0.80, 0.84, 0.84, 0.84]
    assert dom.text("queue").split()[-6:] == ["1", "0", "1", "0", "0", "0"]  # high normal low inbox processing failed
    assert dom.text("verdicts").startswith("run verdict value policy 00004 inconclusive 0.8300")
    assert shot.stat().st_size > 20_000

    status = study.project.status  # the trainer stops beating: the page says STALE
    fsio.atomic_write_json(status, {**fsio.read_json(status), "heartbeat": time.time() - 600})
    dom = Dom(chromium(served, tmp_path / "chromium", wait_ms=2500))
    assert "hidden" not in dom.by_id("stale")["attrs"] and re.fullmatch(r"10m0\ds ago", dom.text("heartbeat"))

    status.write_text('{"phase": "train", "study": "digits_cnn", "run": "00005", "seed_index": 0, "step": NaN}')
    dom = Dom(chromium(served, tmp_path / "chromium", wait_ms=2500))  # a damaged status.json: said, not a blank page
    assert dom.text("phase") == "unknown" and "hidden" not in dom.by_id("problem")["attrs"]
    assert dom.text("problem").startswith("status/status.json is malformed: step: nan is not a finite number")
    assert dom.text("best-run") == "00002"


def test_monitor_page_has_no_outside_references():
    page = monitor.page()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) and "<link" not in page
