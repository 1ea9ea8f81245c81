"""Stand-in for the Hugging Face hub: the file API an engine uses to list and download a model repo.

Serves `ROOT/<org>/<name>/...` as the `main` revision of repo `<org>/<name>`, for clients pointed at it
with HF_ENDPOINT (huggingface_hub 0.x):
- `GET /api/models/<repo>/tree/<revision>[/<path>]`: the files (list_repo_files, list_repo_tree);
- `GET /api/models/<repo>[/revision/<revision>]`: the repo's info with its files (model_info);
- `HEAD|GET /<repo>/resolve/<revision>/<file>`: a file with X-Repo-Commit and ETag (hf_hub_download).
A missing repo answers 404 `RepoNotFound`, a missing file 404 `EntryNotFound`, as the hub does.

Run as `python -m tests.standins.hf_hub --root DIR --host IP --port N`."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Sequence
from urllib.parse import unquote

from .server import HttpError, Reply, Request, json_reply, serve


def _missing(error: str, code: str, **headers: str) -> HttpError:
    failure = HttpError(404, {"error": error})
    failure.reply = Reply(404, json.dumps({"error": error}).encode(), headers={"X-Error-Code": code, **headers})
    return failure


def commit_of(repo: str) -> str:
    """A fixed 40-hex commit per repo (the revision `main` points at)."""
    return hashlib.sha1(f"commit:{repo}".encode()).hexdigest()


class HubApp:
    """The hub's file API over a folder of repos."""

    name = "hf-hub"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _repo(self, parts: list[str]) -> tuple[str, Path]:
        repo = "/".join(parts[:2])
        folder = self.root / repo
        if len(parts) < 2 or not folder.is_dir():
            raise _missing("Repository not found", "RepoNotFound")
        return repo, folder

    def _files(self, folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.is_file())

    def handle(self, request: Request) -> Reply:
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        if parts[:2] == ["api", "models"]:
            repo, folder = self._repo(parts[2:4])
            rest = parts[4:]
            if rest[:1] == ["tree"]:
                prefix = "/".join(rest[2:])
                items = [
                    {"type": "file", "path": p.relative_to(folder).as_posix(), "size": p.stat().st_size,
                     "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                    for p in self._files(folder) if p.relative_to(folder).as_posix().startswith(prefix)
                ]
                return json_reply(items)
            siblings = [{"rfilename": p.relative_to(folder).as_posix()} for p in self._files(folder)]
            return json_reply({"id": repo, "modelId": repo, "sha": commit_of(repo), "siblings": siblings, "private": False})
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, folder = self._repo(parts[:2])
            path = folder / "/".join(parts[4:])
            if not path.is_file() or folder.resolve() not in path.resolve().parents:
                raise _missing("Entry not found", "EntryNotFound", **{"X-Repo-Commit": commit_of(repo)})
            data = path.read_bytes()
            etag = hashlib.sha256(data).hexdigest()
            return Reply(200, data, "application/octet-stream",
                         headers={"X-Repo-Commit": commit_of(repo), "ETag": f'"{etag}"'})
        raise HttpError(404, {"error": "Not found"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf_hub")
    parser.add_argument("--root", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(HubApp(Path(args.root)), args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
