"""`autopilot monitor`: a live page on 127.0.0.1, with the JSON it refreshes from.

    GET /              the page (templates/monitor.html, with the report's chart code inlined)
    GET /api/status    what `autopilot status --json` prints
    GET /api/history   the metric per run, its interval and the best so far (the report's points), last MAX_RUNS
    GET /api/curve     the loss curve of the run in status.json ({"run_id": null, ...} when it is another study's)

The standard library's threading HTTP server; it reads files only, so it can run beside the loop at any time.
It binds to 127.0.0.1 alone: reach it from elsewhere through an SSH tunnel. It answers only requests whose
Host header names the loopback (127.0.0.1, localhost, [::1], any port: an `ssh -L` tunnel may use another):
a web page whose own host name an attacker re-points to 127.0.0.1 (DNS rebinding) gets 403, not the study.
A malformed status.json is reported field by field in /api/status (`live.problem`); any other error is a JSON
500 that names it, never a dropped connection.

Usage:
    server = make_server(study, port=8765); server.serve_forever()
"""

from __future__ import annotations

import json
import logging
import signal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from autopilot import ledger
from autopilot.errors import AutopilotError
from autopilot.ops import control, report, status
from autopilot.study import Study

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")  # what a browser sends as Host for this machine
REFRESH_SECONDS = 2
MAX_RUNS = 1000  # runs drawn on the live page (the report draws all)


def page() -> str:
    return report.fill(report.template("monitor.html"), {
        "style": report.template("style.css"), "plots": report.template("plots.js"),
        "interval": str(REFRESH_SECONDS)})


def history_data(study: Study) -> dict:
    runs = report.run_points(ledger.read_history(study.paths), study.settings.judge.confidence)
    return {"metric": study.metric_name, "goal": study.settings.metric.goal, "runs": runs[-MAX_RUNS:]}


def curve_data(study: Study) -> dict:
    live = control.read_status(study.project) or {}
    if live.get("study") != study.name or not live.get("run"):
        return {"run_id": None, "seed_index": None, "points": []}
    run = study.paths.run(live["run"]).seed(int(live.get("seed_index") or 0))
    return {"run_id": live["run"], "seed_index": live.get("seed_index"), "points": report.loss_curve(run)}


class Handler(BaseHTTPRequestHandler):
    study: Study  # set on the subclass that make_server builds

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        host = self.headers.get("Host")
        if host is not None and not is_loopback(host):
            self.send_error_json(HTTPStatus.FORBIDDEN, f"Host {host!r} is not this machine's loopback name: the "
                                                       f"monitor answers only {', '.join(LOOPBACK_NAMES)}")
            return
        path = self.path.split("?", 1)[0]
        routes = {"/api/status": lambda: status.snapshot(self.study), "/api/history": lambda: history_data(self.study),
                  "/api/curve": lambda: curve_data(self.study)}
        try:
            if path in ("/", "/index.html"):
                self.send(HTTPStatus.OK, page().encode(), "text/html; charset=utf-8")
            elif path in routes:
                self.send(HTTPStatus.OK, json.dumps(routes[path](), allow_nan=False).encode(), "application/json")
            else:
                self.send_error_json(HTTPStatus.NOT_FOUND, "not found")
        except Exception as e:  # a file the loop wrote oddly must not take the page down: say what broke
            log.exception("monitor: %s failed", path)
            self.send_error_json(HTTPStatus.INTERNAL_SERVER_ERROR, f"{path}: {type(e).__name__}: {e}")

    def send_error_json(self, code: HTTPStatus, message: str) -> None:
        self.send(code, json.dumps({"error": message}).encode(), "application/json")

    def send(self, code: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def is_loopback(host: str) -> bool:
    """Whether a Host header (`name`, `name:port`, `[v6]:port`) names this machine's loopback interface."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[: name.find("]") + 1]
    else:
        name = name.rsplit(":", 1)[0]
    return name in LOOPBACK_NAMES


def make_server(study: Study, port: int = 8765) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1:port (0: any free port) that serves `study`; call serve_forever()."""
    handler = type("StudyHandler", (Handler,), {"study": study})
    try:
        server = ThreadingHTTPServer((HOST, port), handler)
    except OSError as e:
        raise AutopilotError(f"cannot serve on {HOST}:{port} ({e.strerror}); pick another port with --port") from None
    server.daemon_threads = True
    return server


def serve_until_stopped(server: ThreadingHTTPServer) -> None:
    """Serve until Ctrl-C (SIGINT) or SIGTERM, then close the socket.

    A monitor started from a script or a supervisor may inherit SIGINT ignored or blocked (a `&` job of a shell
    script ignores it); a server that a user cannot stop with Ctrl-C is a trap, so both signals are unblocked and
    handled here, whatever the parent left."""
    stops = {signal.SIGINT, signal.SIGTERM}

    def stop(signum, frame):
        raise KeyboardInterrupt

    for sig in stops:
        signal.signal(sig, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
