"""HTTP plumbing shared by the stand-ins: request parsing, replies and the request log.

Each engine module supplies an app with `handle(request) -> Reply`; this module owns the rest."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Iterator, Protocol, TypedDict
from urllib.parse import parse_qs, urlsplit

# Stand-in only: never served by a real engine, never recorded, never behind auth.
LOG_PATH = "/__stub__/requests"


class RecordedRequest(TypedDict):
    """One request as a test reads it back from GET /__stub__/requests."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class FormPart:
    """One field of a multipart/form-data body."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


@dataclass
class Request:
    """A parsed incoming request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw_body: bytes
    json: Any = None
    form: dict[str, list[FormPart]] = field(default_factory=dict)

    def bearer_token(self) -> str | None:
        """The token of an `Authorization: Bearer` header, if any."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def form_value(self, name: str) -> str | None:
        """The first text value of a form field."""
        parts = self.form.get(name)
        return parts[0].data.decode("utf-8", "replace") if parts else None

    def record(self) -> RecordedRequest:
        """What the request log keeps: files are summarised, not stored."""
        body: Any = self.json
        if self.form:
            body = {name: _summarise(parts) for name, parts in self.form.items()}
        elif body is None and self.raw_body:
            body = {"size": len(self.raw_body)}
        return RecordedRequest(
            method=self.method, path=self.path, query=self.query, headers=self.headers, body=body
        )


@dataclass
class Reply:
    """A response; `chunks` makes it streamed with chunked transfer encoding."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    chunks: Iterable[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    """Raised by an app to answer with an error status."""

    def __init__(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        super().__init__(status, payload)
        self.reply = json_reply(payload, status) if content_type == "application/json" else Reply(
            status, str(payload).encode(), content_type
        )


class App(Protocol):
    """What an engine stand-in implements."""

    name: str

    def handle(self, request: Request) -> Reply: ...


def json_reply(payload: Any, status: int = 200) -> Reply:
    """A JSON response."""
    return Reply(status, json.dumps(payload).encode(), "application/json")


def text_reply(text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Reply:
    """A plain-text response."""
    return Reply(status, text.encode(), content_type)


class RequestLog:
    """Thread-safe list of the requests an app received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def add(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)

    def items(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class StandinServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one app and its request log."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self.log = RequestLog()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two sends; without TCP_NODELAY each reply waits for a delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: StandinServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"[{self.server.app.name}] {self.address_string()} {format % args}\n")

    def _serve(self) -> None:
        request = self._parse()
        if request.path == LOG_PATH:
            reply = self._log_reply(request.method)
        else:
            self.server.log.add(request.record())
            try:
                reply = self.server.app.handle(request)
            except HttpError as error:
                reply = error.reply
        self._send(reply)

    def _log_reply(self, method: str) -> Reply:
        if method == "DELETE":
            self.server.log.clear()
            return json_reply({"cleared": True})
        return json_reply(self.server.log.items())

    def _parse(self) -> Request:
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        raw = self._read_body(headers)
        request = Request(self.command, url.path, parse_qs(url.query), headers, raw)
        content_type = headers.get("content-type", "")
        if raw and content_type.startswith("application/json"):
            try:
                request.json = json.loads(raw)
            except ValueError:
                request.json = {"unparsable": raw.decode("utf-8", "replace")}
        elif raw and content_type.startswith("multipart/form-data"):
            request.form = parse_multipart(content_type, raw)
        elif raw and content_type.startswith("application/x-www-form-urlencoded"):
            request.json = parse_qs(raw.decode("utf-8", "replace"))
        elif raw:
            try:
                request.json = json.loads(raw)  # clients that send JSON without saying so
            except ValueError:
                pass
        return request

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return b"".join(self._read_chunks())
        length = int(headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunks(self) -> Iterator[bytes]:
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return
            yield self.rfile.read(size)
            self.rfile.readline()

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunks is None:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in reply.chunks:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


def parse_multipart(content_type: str, raw: bytes) -> dict[str, list[FormPart]]:
    """Split a multipart/form-data body into its named parts."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    form: dict[str, list[FormPart]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        form.setdefault(name, []).append(
            FormPart(
                name=name,
                data=payload if isinstance(payload, bytes) else b"",
                filename=part.get_filename(),
                content_type=part.get_content_type() if part.get("content-type") else None,
            )
        )
    return form


def _summarise(parts: list[FormPart]) -> Any:
    values = [
        {"filename": p.filename, "content_type": p.content_type, "size": len(p.data)}
        if p.filename is not None
        else p.data.decode("utf-8", "replace")
        for p in parts
    ]
    return values[0] if len(values) == 1 else values


def serve(app: App, host: str, port: int) -> None:
    """Serve `app` until interrupted or terminated."""
    import signal

    server = StandinServer((host, port), app)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    sys.stderr.write(f"[{app.name}] listening on {host}:{port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def start_in_thread(app: App, host: str = "127.0.0.1", port: int = 0) -> StandinServer:
    """Serve `app` from a daemon thread (for tests); stop with `server.shutdown()`."""
    server = StandinServer((host, port), app)
    threading.Thread(target=server.serve_forever, args=(0.05,), name=f"standin-{app.name}", daemon=True).start()
    return server


def base_url(server: StandinServer) -> str:
    """http://host:port of a running server."""
    host, port = server.server_address[:2]
    return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"
