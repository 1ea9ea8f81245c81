"""The generated relay and edge run by Debian's real Caddy on loopback, with stand-in engines and gateway replicas.

Relay: the engine key is checked, only the gateway's paths pass, TLS verifies against the stack CA (here a CA
made with `cryptography` in the shape StackCA asks pulumi-tls for). Edge: per-request balancing with one
keep-alive client, unbuffered streaming, a dead replica skipped, an unready one health-checked out.
"""

import http.client
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import pytest

from components import caddy
from tests import real_caddy
from tests.stack_ca_files import make_ca, write_server_files
from tests.standins.launcher import base_env, free_port, spawn, stop, wait_ready

# The relay's host address as the gateway dials it: not a loopback address, so Caddy (which sees 127.0.0.1
# as its local address, as a container behind Docker's port mapping sees its own) must pick the
# certificate by `default_sni` for a client that sends no SNI.
HOST_ADDRESS = "10.9.8.7"
EDGE_NAME = "llm.test"
STREAM_CHUNKS = 5
STREAM_GAP = 0.4
HEALTH_INTERVAL = "1s"


class StandIn(ThreadingHTTPServer):
    """An engine or a gateway replica: records each request; streams SSE when the JSON body asks for it."""

    daemon_threads = True

    def __init__(self, name: str, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _StandInHandler)
        self.name = name
        self.seen: list[dict] = []
        self.ready = True
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def requests(self) -> list[dict]:
        """What reached it, readiness probes left out."""
        return [r for r in self.seen if r["path"] != caddy.GATEWAY_READINESS_PATH]


class _StandInHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandIn

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == caddy.GATEWAY_READINESS_PATH:
            self.server.seen.append({"path": self.path})
            self._json(200 if self.server.ready else 503, {"status": "ok" if self.server.ready else "not ready"})
            return
        self._record(b"")
        self._json(200, {"upstream": self.server.name, "path": self.path})

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._record(body)
        if body.startswith(b"{") and json.loads(body).get("stream"):
            self._stream()
        else:
            self._json(200, {"upstream": self.server.name, "path": self.path, "received": len(body)})

    def _record(self, body: bytes) -> None:
        self.server.seen.append(
            {"method": self.command, "path": self.path, "authorization": self.headers.get("Authorization"), "size": len(body)}
        )

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        lines = [json.dumps({"chunk": n}).encode() + b"\n" for n in range(STREAM_CHUNKS)]
        self.send_response(200)
        # A known length and no event-stream type: Caddy would buffer this by default (it flushes chunked
        # and text/event-stream responses by itself), so only `flush_interval -1` delivers it line by line.
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(sum(len(line) for line in lines)))
        self.end_headers()
        for line in lines:
            self.wfile.write(line)
            time.sleep(STREAM_GAP)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to `host` (the name verified in the certificate) through a TCP connection to 127.0.0.1:port."""

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def trusting(ca_pem: str) -> ssl.SSLContext:
    """A client context that trusts only this CA (and checks the host name)."""
    return ssl.create_default_context(cadata=ca_pem)


def call(
    conn: http.client.HTTPConnection, method: str, path: str, key: Optional[str] = None, body: Optional[bytes] = None
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


# --- relay -----------------------------------------------------------------------------------------

KEYS = {"VLLM_QWEN3_API_KEY": "qwen3-key-3f9a1c", "OLLAMA_API_KEY": "ollama-key-8e2d4b"}


@pytest.fixture(scope="module")
def ca():
    return make_ca()


@pytest.fixture(scope="module")
def relay(ca, tmp_path_factory) -> Iterator[dict]:
    directory = tmp_path_factory.mktemp("relay")
    cert_file, key_file = write_server_files(directory / "tls", *ca.issue(ip_addresses=[HOST_ADDRESS]))
    engines = {"qwen3": StandIn("qwen3"), "ollama": StandIn("ollama"), "speaches": StandIn("speaches")}
    routes: list[caddy.RelayRoute] = [
        {"name": "qwen3", "engine": "vllm", "upstream": engines["qwen3"].address, "key_env": "VLLM_QWEN3_API_KEY"},
        {"name": "ollama", "engine": "ollama", "upstream": engines["ollama"].address, "key_env": "OLLAMA_API_KEY"},
        # Its key env is left unset: the relay must then refuse every request to it.
        {"name": "speaches", "engine": "speaches", "upstream": engines["speaches"].address, "key_env": "SPEACHES_API_KEY"},
    ]
    port, health_port = free_port(), free_port()
    text = caddy.render_relay_caddyfile(
        routes, server_name=HOST_ADDRESS, port=port, cert_file=str(cert_file), key_file=str(key_file), health_port=health_port
    )
    with real_caddy.running(text, directory, health_port, env=KEYS):
        yield {"port": port, "engines": engines}
    for engine in engines.values():
        engine.shutdown()


@pytest.fixture
def relay_conn(relay, ca) -> Iterator[http.client.HTTPSConnection]:
    for engine in relay["engines"].values():
        engine.seen.clear()
    conn = PinnedHTTPSConnection(HOST_ADDRESS, relay["port"], context=trusting(ca.cert_pem), timeout=10)
    yield conn
    conn.close()


def test_relay_forwards_the_gateway_paths_with_the_engine_key(relay, relay_conn):
    qwen3 = relay["engines"]["qwen3"]
    status, body = call(relay_conn, "POST", "/qwen3/v1/chat/completions", KEYS["VLLM_QWEN3_API_KEY"], b'{"model": "qwen3"}')
    assert status == 200 and json.loads(body)["path"] == "/v1/chat/completions"
    assert call(relay_conn, "GET", "/qwen3/v1/models", KEYS["VLLM_QWEN3_API_KEY"])[0] == 200
    assert call(relay_conn, "POST", "/qwen3/v1/completions", KEYS["VLLM_QWEN3_API_KEY"], b"{}")[0] == 200
    # vLLM checks the key again itself: it gets the header as sent.
    assert [(r["path"], r["authorization"]) for r in qwen3.requests()] == [
        ("/v1/chat/completions", "Bearer qwen3-key-3f9a1c"),
        ("/v1/models", "Bearer qwen3-key-3f9a1c"),
        ("/v1/completions", "Bearer qwen3-key-3f9a1c"),
    ]


@pytest.mark.parametrize("key", [None, "wrong-key", "", KEYS["OLLAMA_API_KEY"]], ids=["missing", "wrong", "empty", "other-engine"])
def test_relay_refuses_a_missing_or_wrong_key_with_401(relay, relay_conn, key):
    status, body = call(relay_conn, "POST", "/qwen3/v1/chat/completions", key, b"{}")
    assert (status, body) == (401, b"missing or wrong key")
    assert relay["engines"]["qwen3"].requests() == []


@pytest.mark.parametrize(
    "path",
    [
        "/qwen3/metrics",
        "/qwen3/invocations",
        "/qwen3/tokenize",
        "/qwen3/health",
        "/qwen3/v1/models/qwen3",
        "/qwen3/v1/chat/completions/../../../metrics",
        "/qwen3/v1/models%2F..%2F..%2Fmetrics",
        "/qwen3//metrics",
        "/qwen3/",
    ],
)
def test_relay_refuses_every_other_path_even_with_the_key(relay, relay_conn, path):
    status, _ = call(relay_conn, "POST", path, KEYS["VLLM_QWEN3_API_KEY"], b"{}")
    assert status == 403
    assert relay["engines"]["qwen3"].requests() == []


def test_relay_answers_404_for_an_unknown_engine(relay, relay_conn):
    assert call(relay_conn, "GET", "/infinity/models", KEYS["VLLM_QWEN3_API_KEY"]) == (404, b"unknown engine")
    assert call(relay_conn, "GET", "/metrics") == (404, b"unknown engine")


def test_relay_enforces_the_ollama_key_and_does_not_pass_it_on(relay, relay_conn):
    ollama = relay["engines"]["ollama"]
    status, body = call(relay_conn, "POST", "/ollama/api/chat", KEYS["OLLAMA_API_KEY"], b'{"model": "small"}')
    assert status == 200 and json.loads(body)["path"] == "/api/chat"
    assert call(relay_conn, "POST", "/ollama/api/chat", None, b"{}")[0] == 401
    assert call(relay_conn, "POST", "/ollama/api/pull", KEYS["OLLAMA_API_KEY"], b"{}")[0] == 403
    assert [(r["path"], r["authorization"]) for r in ollama.requests()] == [("/api/chat", None)]


def test_relay_with_an_unset_key_env_refuses_even_a_bare_bearer_over_http2(relay, ca, tmp_path):
    # HTTP/2 keeps `Bearer ` untrimmed, which would equal "Bearer " + an empty env without the emptiness check.
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca.cert_pem)
    url = f"https://{HOST_ADDRESS}:{relay['port']}/speaches/v1/models"
    for header in ("Authorization: Bearer ", "Authorization: Bearer", "Authorization:"):
        done = subprocess.run(
            ["curl", "-sS", "--http2", "--cacert", str(ca_file), "--connect-to", f"{HOST_ADDRESS}:{relay['port']}:127.0.0.1:{relay['port']}",
             "-H", header, "-o", "/dev/null", "-w", "%{http_version} %{http_code}", url],
            capture_output=True, text=True, timeout=30,
        )
        assert done.stdout == "2 401", (header, done.stdout, done.stderr)
    assert relay["engines"]["speaches"].requests() == []


def test_relay_tls_verifies_against_the_stack_ca_only(relay, ca):
    ok = PinnedHTTPSConnection(HOST_ADDRESS, relay["port"], context=trusting(ca.cert_pem), timeout=10)
    ok.connect()
    assert ok.sock.getpeercert()["subjectAltName"] == (("IP Address", HOST_ADDRESS),)
    ok.close()
    stranger = PinnedHTTPSConnection(HOST_ADDRESS, relay["port"], context=trusting(make_ca("another CA").cert_pem), timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.connect()
    wrong_name = PinnedHTTPSConnection("10.9.8.6", relay["port"], context=trusting(ca.cert_pem), timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        wrong_name.connect()


def test_relay_streams_chunk_by_chunk(relay, relay_conn):
    arrivals = stream(relay_conn, "/qwen3/v1/chat/completions", KEYS["VLLM_QWEN3_API_KEY"])
    assert_unbuffered(arrivals)


# --- edge ------------------------------------------------------------------------------------------


def stream(conn: http.client.HTTPConnection, path: str, key: Optional[str] = None) -> list[float]:
    """Arrival time of each streamed line."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn.request("POST", path, body=b'{"stream": true}', headers=headers)
    response = conn.getresponse()
    assert response.status == 200
    arrivals = []
    while line := response.readline():
        json.loads(line)
        arrivals.append(time.monotonic())
    return arrivals


def assert_unbuffered(arrivals: list[float]) -> None:
    assert len(arrivals) == STREAM_CHUNKS
    # Lines are sent STREAM_GAP apart: arriving as sent, they spread over (STREAM_CHUNKS - 1) gaps; a buffering
    # proxy delivers them together at the end. Half the spread leaves room for a slow test machine.
    spread = arrivals[-1] - arrivals[0]
    assert spread > (STREAM_CHUNKS - 1) * STREAM_GAP / 2, [round(t - arrivals[0], 2) for t in arrivals]


class Edge:
    """A running edge (tls: internal) in front of some upstreams."""

    def __init__(self, port: int, ca_pem: str) -> None:
        self.port = port
        self.ca_pem = ca_pem

    def connection(self) -> PinnedHTTPSConnection:
        return PinnedHTTPSConnection(EDGE_NAME, self.port, context=trusting(self.ca_pem), timeout=30)


@contextmanager
def run_edge(ca, directory: Path, upstreams: list[str], extra_routes: Sequence[caddy.ExtraRoute] = ()) -> Iterator[Edge]:
    """The edge Caddyfile (tls: internal) rendered for these upstreams and run by real Caddy."""
    cert_file, key_file = write_server_files(directory / "tls", *ca.issue(dns_names=[EDGE_NAME]))
    port, health_port = free_port(), free_port()
    text = caddy.render_edge_caddyfile(
        tls="internal", domain=EDGE_NAME, upstreams=upstreams, extra_routes=extra_routes, https_port=port,
        cert_file=str(cert_file), key_file=str(key_file), health_port=health_port, health_interval=HEALTH_INTERVAL,
    )
    with real_caddy.running(text, directory, health_port):
        yield Edge(port, ca.cert_pem)


@pytest.fixture
def replicas() -> Iterator[list[StandIn]]:
    servers = [StandIn("replica-1"), StandIn("replica-2")]
    yield servers
    for s in servers:
        s.shutdown()


def wait_for_health_checks() -> None:
    # Two intervals: every active check has run at least once since the last change.
    time.sleep(2.5 * float(HEALTH_INTERVAL.rstrip("s")))


def test_edge_balances_each_request_of_one_keep_alive_client_over_both_replicas(ca, tmp_path, replicas):
    with run_edge(ca, tmp_path, [r.address for r in replicas]) as edge:
        wait_for_health_checks()
        conn = edge.connection()
        served = [json.loads(call(conn, "POST", "/v1/chat/completions", "sk-client", b"{}")[1])["upstream"] for _ in range(20)]
        first_socket = conn.sock
        assert call(conn, "GET", "/v1/models")[0] == 200 and conn.sock is first_socket, "the client kept one connection"
        conn.close()
    assert served.count("replica-1") == served.count("replica-2") == 10


def test_edge_spreads_requests_over_the_workers_of_one_replica(ca, tmp_path):
    port = free_port()
    workers = spawn([sys.executable, "-m", "tests.standins.prefork", "--port", str(port), "--workers", "2"], base_env(), tmp_path / "prefork.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/health/readiness", workers, timeout=20, log_path=tmp_path / "prefork.log")
        with run_edge(ca, tmp_path, [f"127.0.0.1:{port}"]) as edge:
            conn = edge.connection()
            pids = [json.loads(call(conn, "POST", "/v1/chat/completions", "sk-client", b"{}")[1])["pid"] for _ in range(40)]
            conn.close()
    finally:
        stop(workers)
    assert len(set(pids)) == 2, f"one keep-alive client reached only {set(pids)}"


def test_edge_streams_chunk_by_chunk(ca, tmp_path, replicas):
    with run_edge(ca, tmp_path, [replicas[0].address]) as edge:
        conn = edge.connection()
        assert_unbuffered(stream(conn, "/v1/chat/completions", "sk-client"))
        conn.close()


def test_edge_never_sends_a_request_to_a_replica_dead_from_the_start(ca, tmp_path, replicas):
    dead = f"127.0.0.1:{free_port()}"
    with run_edge(ca, tmp_path, [dead, replicas[0].address]) as edge:
        conn = edge.connection()
        results = [call(conn, "POST", "/v1/chat/completions", "sk-client", b'{"n": %d}' % i) for i in range(20)]
        conn.close()
    assert [status for status, _ in results] == [200] * 20
    assert len(replicas[0].requests()) == 20


def test_edge_retries_on_the_other_replica_when_one_dies_between_health_checks(ca, tmp_path, replicas):
    # Caddy 2.6.2 retries a refused connection on another upstream even without lb_try_duration; the setting
    # makes it explicit (the next test shows what only it does).
    with run_edge(ca, tmp_path, [r.address for r in replicas]) as edge:
        wait_for_health_checks()
        conn = edge.connection()
        assert call(conn, "POST", "/v1/chat/completions", "sk-client", b"{}")[0] == 200
        # Gone, listening socket closed: connections are refused until the next check takes it out.
        replicas[1].shutdown()
        replicas[1].server_close()
        results = [call(conn, "POST", "/v1/chat/completions", "sk-client", b'{"n": %d}' % i)[0] for i in range(10)]
        conn.close()
    assert results == [200] * 10
    assert len(replicas[0].requests()) >= 10


def test_edge_holds_a_request_while_no_replica_answers_until_one_does(ca, tmp_path):
    # Every replica unreachable for a moment (all being replaced): the request waits up to 15 s, not a 503.
    # A GET here: Caddy 2.6.2 retries "no upstreams available" only for GETs and answers a POST 503 at once;
    # the pinned 2.11 retries every method (caddyserver/caddy#5841, in 2.7.5).
    port = free_port()
    late: list[StandIn] = []
    with run_edge(ca, tmp_path, [f"127.0.0.1:{port}"]) as edge:
        conn = edge.connection()
        starter = threading.Timer(1.5, lambda: late.append(StandIn("late-replica", port)))
        starter.start()
        started = time.monotonic()
        status, body = call(conn, "GET", "/v1/models", "sk-client")
        waited = time.monotonic() - started
        conn.close()
        starter.join()
    late[0].shutdown()
    assert status == 200 and json.loads(body)["upstream"] == "late-replica"
    assert 1.5 <= waited < float(caddy.LB_TRY_DURATION.rstrip("s"))


def test_edge_takes_an_unready_replica_out_and_back_in(ca, tmp_path, replicas):
    with run_edge(ca, tmp_path, [r.address for r in replicas]) as edge:
        replicas[1].ready = False
        wait_for_health_checks()
        conn = edge.connection()
        while_unready = [json.loads(call(conn, "POST", "/v1/completions", "sk-client", b"{}")[1])["upstream"] for _ in range(10)]
        replicas[1].ready = True
        wait_for_health_checks()
        when_ready = [json.loads(call(conn, "POST", "/v1/completions", "sk-client", b"{}")[1])["upstream"] for _ in range(10)]
        conn.close()
    assert set(while_unready) == {"replica-1"}
    assert set(when_ready) == {"replica-1", "replica-2"}
    assert any(r["path"] == caddy.GATEWAY_READINESS_PATH for r in replicas[1].seen), "the edge probes readiness"


def test_edge_passes_an_audio_sized_upload_and_routes_dashboards_by_path(ca, tmp_path, replicas):
    dashboards = StandIn("grafana")
    try:
        with run_edge(ca, tmp_path, [replicas[0].address], [{"path": "/grafana", "upstream": dashboards.address}]) as edge:
            conn = edge.connection()
            upload = b"{" + b" " * (30 * 1024 * 1024) + b"}"
            status, body = call(conn, "POST", "/v1/audio/transcriptions", "sk-client", upload)
            assert status == 200 and json.loads(body)["received"] == len(upload)
            assert json.loads(call(conn, "GET", "/grafana/api/health")[1]) == {"upstream": "grafana", "path": "/grafana/api/health"}
            assert json.loads(call(conn, "GET", "/grafana")[1])["upstream"] == "grafana"
            assert json.loads(call(conn, "GET", "/grafanax")[1])["upstream"] == "replica-1"
            conn.close()
    finally:
        dashboards.shutdown()
