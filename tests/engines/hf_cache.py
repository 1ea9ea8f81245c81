"""A Hugging Face cache laid out on disk, so a repo id in a command resolves offline (HF_HUB_OFFLINE=1).

The engines read `<HF_HOME>/hub/models--<org>--<name>/snapshots/<revision>/` with `refs/main`
naming the revision, exactly as after a download: the container commands keep their repo ids."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

HUB = "hub"
FIXTURES = Path(__file__).resolve().parent / "models"


def repo_folder(repo_id: str) -> str:
    """`models--Qwen--Qwen3-0.6B` for `Qwen/Qwen3-0.6B` (huggingface_hub's cache naming)."""
    return "models--" + repo_id.replace("/", "--")


def lay_out(hf_home: Path, repo_id: str, files: Path) -> Path:
    """Copy the files of `files` (a folder) as the cached main revision of `repo_id`; returns the snapshot folder."""
    revision = hashlib.sha1(repo_id.encode()).hexdigest()  # any 40-hex name; fixed per repo
    repo = hf_home / HUB / repo_folder(repo_id)
    snapshot = repo / "snapshots" / revision
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(files, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def fixture_of(repo_id: str) -> Path:
    """tests/engines/models/<repo id>/: the published config.json of a model a stack names."""
    folder = FIXTURES / repo_id
    if not (folder / "config.json").is_file():
        raise LookupError(
            f"no config.json fixture for {repo_id}: add tests/engines/models/{repo_id}/config.json "
            "with the values published in the model's repository"
        )
    return folder
