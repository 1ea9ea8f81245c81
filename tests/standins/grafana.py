"""Stand-in for `grafana/grafana` (entrypoint /run.sh): reads the provisioning files as Grafana does at start and
serves /api/health, /api/search and /api/datasources. Real Grafana does not run here (no package, no registry).

It refuses to start, as a strict Grafana would have to, when the admin password env is missing, a provisioning
file or dashboard does not parse, or its data directory is not writable by its user (uid 472 in the image)."""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from .server import HttpError, Reply, Request, json_reply, serve

DEFAULT_PORT = 3000
PASSWORD_ENV = "GF_SECURITY_ADMIN_PASSWORD"
PROVISIONING = Path(os.environ.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning"))
DATA = Path(os.environ.get("GF_PATHS_DATA", "/var/lib/grafana"))


def load_provisioning(root: Path) -> tuple[list[dict], list[dict]]:
    """(datasources, dashboards) from `root`'s datasources/*.yaml and the dashboard providers' folders."""
    datasources: list[dict] = []
    for path in sorted((root / "datasources").glob("*.yaml")):
        datasources += yaml.safe_load(path.read_text())["datasources"]
    boards: list[dict] = []
    for path in sorted((root / "dashboards").glob("*.yaml")):
        for provider in yaml.safe_load(path.read_text())["providers"]:
            for board in sorted(Path(provider["options"]["path"]).glob("*.json")):
                document = json.loads(board.read_text())
                boards.append({"uid": document["uid"], "title": document["title"], "type": "dash-db",
                               "folderTitle": provider.get("folder", ""), "panels": len(document.get("panels", []))})
    return datasources, boards


class GrafanaApp:
    name = "grafana"

    def __init__(self, password: str, datasources: list[dict], boards: list[dict], sub_path: str = "") -> None:
        self.password = password
        self.datasources = datasources
        self.boards = boards
        self.sub_path = sub_path

    def local_path(self, path: str) -> str:
        """With serve_from_sub_path (behind the edge at /grafana/), the path below the root URL's path. A path
        without it is served too, as Grafana redirects it there (the healthcheck calls /api/health)."""
        if self.sub_path and path.startswith(self.sub_path + "/"):
            return path[len(self.sub_path):]
        return path

    def handle(self, request: Request) -> Reply:
        path = self.local_path(request.path)
        if path == "/api/health":
            return json_reply({"database": "ok", "version": "stand-in"})
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        user, _, password = base64.b64decode(credentials or "").decode(errors="replace").partition(":") if scheme == "Basic" else ("", "", "")
        if (user, password) != ("admin", self.password):
            raise HttpError(401, {"message": "Unauthorized"})
        if path == "/api/search":
            return json_reply(self.boards)
        if path == "/api/datasources":
            return json_reply(self.datasources)
        raise HttpError(404, {"message": "Not found"})


def main() -> int:
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        sys.stderr.write(f"[grafana] {PASSWORD_ENV} is not set: the admin password would be `admin`\n")
        return 1
    datasources, boards = load_provisioning(PROVISIONING)
    (DATA / "grafana.db").write_text("stand-in\n")  # the data volume must be writable by the image's user
    sub_path = ""
    if os.environ.get("GF_SERVER_SERVE_FROM_SUB_PATH") == "true":
        sub_path = urllib.parse.urlsplit(os.environ.get("GF_SERVER_ROOT_URL", "")).path.rstrip("/")
    serve(GrafanaApp(password, datasources, boards, sub_path), "0.0.0.0", int(os.environ.get("GF_SERVER_HTTP_PORT", DEFAULT_PORT)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
