"""A gateway replica with several worker processes on one listening socket, as `litellm --num_workers N` runs.

Each worker answers with its pid; `/health/readiness` answers 200. The kernel hands each new connection to
one worker, so what a test learns from the pids is how the proxy in front spreads connections.

    python -m tests.standins.prefork --port 4000 --workers 2
"""

import argparse
import json
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class WorkerHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"pid": os.getpid(), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(64)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            server = HTTPServer(("127.0.0.1", args.port), WorkerHandler, bind_and_activate=False)
            server.socket = listener
            server.serve_forever()
            os._exit(0)
        children.append(pid)
    print(json.dumps({"workers": children}), flush=True)

    def stop(signum: int, frame: object) -> None:
        for child in children:
            os.kill(child, signal.SIGTERM)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    for _ in children:
        os.wait()


if __name__ == "__main__":
    main()
