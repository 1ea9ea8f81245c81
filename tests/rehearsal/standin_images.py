"""Stand-in images for the rehearsal, built offline and tagged with the program's exact image names.

No registry can be reached here, so each image is `FROM scratch` plus a tiny root filesystem
(a few directories, /etc/passwd and /etc/group with the real image's users, the entrypoint script
or command shims of the real image) and the real image's ENTRYPOINT / CMD / ENV / USER / WORKDIR /
VOLUME / STOPSIGNAL. The programs come from the host through read-only bind mounts that the
rehearsal adds to every container: `rehearsal_binds()` is the ONE place that lists them.

    vllm      ENTRYPOINT ["vllm", "serve"]          -> python -m tests.standins.vllm ARGS
    ollama    ENTRYPOINT ["ollama"], CMD ["serve"]  -> python -m tests.standins.ollama ARGS (also `ollama list` in healthchecks)
    infinity  ENTRYPOINT ["infinity_emb"]           -> python -m tests.standins.infinity ARGS (ARGS start with `v2`)
    speaches  CMD ["uvicorn", "--factory", ...], USER ubuntu (1000) -> python -m tests.standins.speaches ARGS
    litellm   ENTRYPOINT litellm, CMD ["--port", "4000"] -> the real litellm from the venv
    redis     docker-entrypoint semantics, CMD ["redis-server"] -> Debian's redis-server
    postgres  docker-entrypoint semantics (initdb from POSTGRES_* env), CMD ["postgres"] -> Debian's PostgreSQL
    prometheus         ENTRYPOINT ["/bin/prometheus"], USER nobody -> Debian's prometheus (2.42; the image has 3.x)
    blackbox-exporter  ENTRYPOINT ["/bin/blackbox_exporter"], USER nobody -> Debian's prometheus-blackbox-exporter (0.23)
    grafana            ENTRYPOINT ["/run.sh"], USER 472 -> python -m tests.standins.grafana (real Grafana cannot run here)
    dcgm-exporter      (distroless, needs a GPU) -> python -m tests.standins.dcgm
    caddy              CMD ["caddy", "run", ...] -> Debian's caddy (2.6.2; the image has 2.11), `wget` -> busybox's

Images are built through the Engine API (`POST /build`, the classic builder: `FROM scratch` needs
no registry). A tag that already exists and is not a rehearsal stand-in is never overwritten
(unless force=True), so a developer's real `redis:8.10.2` survives.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import io
import json
import os
import sys
import tarfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable, Optional, Union

from .docker_api import Engine, RehearsalError

#: Label on every stand-in image; its value is a hash of what the image was built from.
STANDIN_LABEL = "llmstack.rehearsal.standin"
#: Where the repository (for `tests.standins`) is mounted in every container.
REPO_MOUNT = "/opt/llmstack-repo"
#: Where the rehearsal's shims and entrypoint scripts live inside the images (not under /usr,
#: which is the host's).
SHIM_DIR = "/opt/rehearsal/bin"
ENTRYPOINTS_DIR = Path(__file__).resolve().parent / "entrypoints"
REPO_ROOT = Path(__file__).resolve().parents[2]

#: The image names the program pins (the runner passes the real ones; these are the defaults of
#: ../shared/docs/service-facts.md).
DEFAULT_TAGS: dict[str, str] = {
    "vllm": "vllm/vllm-openai:v0.31.0",
    "ollama": "ollama/ollama:0.35.1",
    "infinity": "michaelf34/infinity:0.0.77-cpu",
    "speaches": "ghcr.io/speaches-ai/speaches:0.8.3-cpu",
    "litellm": "ghcr.io/berriai/litellm:v1.108.7",
    "redis": "redis:8.10.2",
    "postgres": "postgres:17",
    "prometheus": "prom/prometheus:v3.13.2",
    "blackbox-exporter": "prom/blackbox-exporter:v0.25.0",
    "grafana": "grafana/grafana:13.1.0",
    "dcgm-exporter": "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-distroless",
    "caddy": "caddy:2.11.4",
}

_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MERGED_USR_DIRS = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")


# ---------------------------------------------------------------------------------------------
# The rehearsal's bind mounts: the ONE place


def python_paths(python: Optional[str] = None) -> tuple[str, list[str]]:
    """(interpreter to run in containers, directories it needs) for `python` (default: this one)."""
    exe = python or sys.executable
    if python and python != sys.executable:
        import subprocess
        out = subprocess.run([exe, "-c", "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix]))"],
                             capture_output=True, text=True, check=True).stdout
        prefix, base = json.loads(out)
    else:
        prefix, base = sys.prefix, sys.base_prefix
    dirs = []
    for d in (os.path.realpath(base), prefix, os.path.realpath(prefix)):
        if not d.startswith("/usr/") and d != "/usr" and d not in dirs:
            dirs.append(d)
    return exe, dirs


def rehearsal_binds(repo_root: Union[str, Path, None] = None, python: Optional[str] = None) -> list[str]:
    """Read-only bind mounts added to EVERY rehearsal container ("host:container:ro"):

    - /usr (the host's programs and libraries: sh, curl, python3, redis-server, PostgreSQL, ...),
      plus /bin, /sbin, /lib, /lib64 where they are not merged-/usr symlinks on the host (where
      they are, the stand-in root filesystem has the same symlinks);
    - /etc/alternatives (Debian's alternative symlinks under /usr/bin point there), /etc/ssl;
    - the Python install and venv of `python` (same paths inside: a venv's paths are absolute);
    - the repository at REPO_MOUNT (for `python -m tests.standins.*`).
    """
    binds = ["/usr:/usr:ro"]
    for d in _MERGED_USR_DIRS:
        p = f"/{d}"
        if os.path.exists(p) and not os.path.islink(p):
            binds.append(f"{p}:{p}:ro")
    for p in ("/etc/alternatives", "/etc/ssl"):
        if os.path.isdir(p):
            binds.append(f"{p}:{p}:ro")
    for d in python_paths(python)[1]:
        binds.append(f"{d}:{d}:ro")
    repo = Path(repo_root or REPO_ROOT).resolve()
    binds.append(f"{repo}:{REPO_MOUNT}:ro")
    return binds


# ---------------------------------------------------------------------------------------------
# What each real image looks like


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """The parts of a real image's config that the program relies on, plus the shims behind them."""

    entrypoint: Optional[list[str]] = None
    cmd: Optional[list[str]] = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    user: Optional[str] = None
    workdir: Optional[str] = None
    volumes: tuple[str, ...] = ()
    stopsignal: Optional[str] = None
    #: shim name in SHIM_DIR -> the program it runs: ("standin", module, drop_first_arg_if) or
    #: ("litellm",) or ("script", file under entrypoints/) or ("exec", a host program)
    shims: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    #: extra users (name, uid) besides root
    users: tuple[tuple[str, int], ...] = ()
    #: directories (path, uid, mode) that must exist in the image (a fresh named volume mounted on
    #: one of them copies its owner, as on the real image)
    dirs: tuple[tuple[str, int, int], ...] = ()
    #: the stand-ins import the repository
    needs_repo: bool = False


def _pg_bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return found[-1] if found else "/usr/lib/postgresql/15/bin"


def image_specs(venv_bin: str) -> dict[str, ImageSpec]:
    """kind -> ImageSpec, after the real images (see ../shared/docs/service-facts.md)."""
    standin_env = {"PATH": f"{SHIM_DIR}:{_BASE_PATH}", "PYTHONPATH": REPO_MOUNT,
                   "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    return {
        "vllm": ImageSpec(
            entrypoint=[f"{SHIM_DIR}/vllm", "serve"], env={**standin_env, "HOME": "/root"},
            workdir="/vllm-workspace", shims={"vllm": ("standin", "tests.standins.vllm", "serve")},
            dirs=(("/vllm-workspace", 0, 0o755), ("/root/.cache/huggingface", 0, 0o755)), needs_repo=True),
        "ollama": ImageSpec(
            entrypoint=[f"{SHIM_DIR}/ollama"], cmd=["serve"],
            env={**standin_env, "HOME": "/root", "OLLAMA_HOST": "0.0.0.0:11434"},
            shims={"ollama": ("standin", "tests.standins.ollama", None)},
            dirs=(("/root/.ollama", 0, 0o755),), needs_repo=True),
        "infinity": ImageSpec(
            entrypoint=[f"{SHIM_DIR}/infinity_emb"],
            env={**standin_env, "HOME": "/root", "HF_HOME": "/app/.cache/huggingface"}, workdir="/app",
            shims={"infinity_emb": ("standin", "tests.standins.infinity", None)},
            dirs=(("/app", 0, 0o755), ("/app/.cache", 0, 0o755)), needs_repo=True),
        "speaches": ImageSpec(
            cmd=["uvicorn", "--factory", "speaches.main:create_app"],
            env={**standin_env, "HOME": "/home/ubuntu", "UVICORN_HOST": "0.0.0.0", "UVICORN_PORT": "8000"},
            user="ubuntu", workdir="/home/ubuntu/speaches",
            shims={"uvicorn": ("standin", "tests.standins.speaches", None)}, users=(("ubuntu", 1000),),
            dirs=(("/home/ubuntu", 1000, 0o755), ("/home/ubuntu/speaches", 1000, 0o755),
                  ("/home/ubuntu/.cache", 1000, 0o755), ("/home/ubuntu/.cache/huggingface", 1000, 0o755),
                  ("/home/ubuntu/.cache/huggingface/hub", 1000, 0o755)), needs_repo=True),
        "litellm": ImageSpec(
            entrypoint=[f"{SHIM_DIR}/litellm"], cmd=["--port", "4000"],
            env={"PATH": f"{SHIM_DIR}:{venv_bin}:{_BASE_PATH}", "HOME": "/root",
                 "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"},
            workdir="/app", shims={"litellm": ("litellm",)}, dirs=(("/app", 0, 0o755),)),
        "redis": ImageSpec(
            entrypoint=[f"{SHIM_DIR}/docker-entrypoint.sh"], cmd=["redis-server"],
            env={"PATH": f"{SHIM_DIR}:{_BASE_PATH}"}, workdir="/data", volumes=("/data",),
            shims={"docker-entrypoint.sh": ("script", "redis-entrypoint.sh")}, users=(("redis", 999),),
            dirs=(("/data", 999, 0o755),)),
        "postgres": ImageSpec(
            entrypoint=[f"{SHIM_DIR}/docker-entrypoint.sh"], cmd=["postgres"],
            env={"PATH": f"{SHIM_DIR}:{_pg_bin()}:{_BASE_PATH}", "PGDATA": "/var/lib/postgresql/data",
                 "LANG": "C.UTF-8"},
            volumes=("/var/lib/postgresql/data",), stopsignal="SIGINT",
            shims={"docker-entrypoint.sh": ("script", "postgres-entrypoint.sh")}, users=(("postgres", 999),),
            dirs=(("/var/lib/postgresql", 999, 0o755), ("/var/lib/postgresql/data", 999, 0o700),
                  ("/run/postgresql", 999, 0o3777))),
        # /bin is the host's /usr/bin here (merged /usr), so /bin/prometheus is Debian's binary.
        "prometheus": ImageSpec(
            entrypoint=["/bin/prometheus"], env={"PATH": _BASE_PATH}, user="nobody", workdir="/prometheus",
            users=(("nobody", 65534),), dirs=(("/etc/prometheus", 0, 0o755), ("/prometheus", 65534, 0o755))),
        "blackbox-exporter": ImageSpec(
            entrypoint=[f"{SHIM_DIR}/blackbox_exporter"], cmd=["--config.file=/etc/blackbox_exporter/config.yml"],
            env={"PATH": _BASE_PATH}, user="nobody", users=(("nobody", 65534),),
            shims={"blackbox_exporter": ("exec", "/usr/bin/prometheus-blackbox-exporter")},
            dirs=(("/etc/blackbox_exporter", 0, 0o755),)),
        "grafana": ImageSpec(
            entrypoint=[f"{SHIM_DIR}/run.sh"],
            env={**standin_env, "HOME": "/usr/share/grafana", "GF_PATHS_DATA": "/var/lib/grafana",
                 "GF_PATHS_PROVISIONING": "/etc/grafana/provisioning"},
            user="472", users=(("grafana", 472),), shims={"run.sh": ("standin", "tests.standins.grafana", None)},
            dirs=(("/etc/grafana", 0, 0o755), ("/etc/grafana/provisioning", 0, 0o755), ("/var/lib/grafana", 472, 0o755)),
            needs_repo=True),
        "dcgm-exporter": ImageSpec(
            entrypoint=[f"{SHIM_DIR}/dcgm-exporter"], env=standin_env,
            shims={"dcgm-exporter": ("standin", "tests.standins.dcgm", None)}, needs_repo=True),
        # caddyserver/caddy-docker 2.11/alpine/Dockerfile: XDG dirs /config and /data (volumes), WORKDIR /srv,
        # CMD caddy run on /etc/caddy/Caddyfile, caddy in /usr/bin (here Debian's, the host's /usr). The
        # healthcheck runs Alpine's busybox `wget`: the shim is Debian's busybox, not GNU wget, so an option
        # only GNU wget knows fails here as in the real image.
        "caddy": ImageSpec(
            cmd=["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"],
            env={"PATH": f"{SHIM_DIR}:{_BASE_PATH}", "XDG_CONFIG_HOME": "/config", "XDG_DATA_HOME": "/data"},
            workdir="/srv", volumes=("/config", "/data"),
            shims={"wget": ("exec", "/usr/bin/busybox wget")},
            dirs=(("/etc/caddy", 0, 0o755), ("/config", 0, 0o755), ("/data", 0, 0o755), ("/srv", 0, 0o755))),
    }


# ---------------------------------------------------------------------------------------------
# Building


def _shim(kind: tuple, python: str) -> bytes:
    if kind[0] == "standin":
        _, module, drop = kind
        lines = ["#!/bin/sh", f"# rehearsal shim: the real image's command -> {module}"]
        if drop:
            lines.append(f'[ "${{1:-}}" = {drop} ] && shift')
        lines.append(f'exec {python} -m {module} "$@"')
        return ("\n".join(lines) + "\n").encode()
    if kind[0] == "litellm":
        return (f"#!/bin/sh\n# rehearsal shim: the image's litellm CLI -> the real litellm of this venv\n"
                f"exec {python} -c 'import sys; sys.argv[0] = \"litellm\"; from litellm import run_server; "
                f"sys.exit(run_server())' \"$@\"\n").encode()
    if kind[0] == "script":
        return (ENTRYPOINTS_DIR / kind[1]).read_bytes()
    if kind[0] == "exec":
        return f'#!/bin/sh\n# rehearsal shim: the image\'s program -> {kind[1]} (Debian\'s build)\nexec {kind[1]} "$@"\n'.encode()
    raise ValueError(kind)


def rootfs_tar(spec: ImageSpec, python: str) -> bytes:
    """The stand-in root filesystem: directories, users, merged-/usr symlinks, shims."""
    users = [("root", 0, "/root")] + [(n, uid, f"/home/{n}" if uid >= 1000 else "/nonexistent")
                                      for n, uid in spec.users]
    passwd = "".join(f"{n}:x:{uid}:{uid}:{n}:{home}:/bin/sh\n" for n, uid, home in users)
    group = "".join(f"{n}:x:{uid}:\n" for n, uid, _ in users)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        done: set[str] = set()

        def add_dir(path: str, uid: int = 0, mode: int = 0o755) -> None:
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):   # parents first, root-owned
                parent = "/".join(parts[:i])
                if parent not in done:
                    add_dir("/" + parent)
            name = path.strip("/")
            if name in done:
                return
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, mode, uid, uid, 0
            tar.addfile(info)
            done.add(name)

        def add_link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, 0
            tar.addfile(info)
            done.add(name)

        def add_file(path: str, data: bytes, mode: int = 0o644) -> None:
            add_dir(os.path.dirname(path))
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))

        for d, mode in (("/tmp", 0o1777), ("/var/tmp", 0o1777), ("/root", 0o755), ("/etc", 0o755),
                        ("/proc", 0o755), ("/sys", 0o755), ("/dev", 0o755), ("/run", 0o755),
                        ("/usr", 0o755), ("/home", 0o755), ("/opt", 0o755)):
            add_dir(d, 0, mode)
        add_dir("/var", 0, 0o755)
        add_link("var/run", "/run")  # as on Debian
        for d in _MERGED_USR_DIRS:
            if os.path.islink(f"/{d}"):
                add_link(d, os.readlink(f"/{d}"))
        add_file("/etc/passwd", passwd.encode())
        add_file("/etc/group", group.encode())
        add_file("/etc/hostname", b"standin\n")
        add_file("/etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
        if os.path.exists("/etc/ld.so.cache"):
            add_file("/etc/ld.so.cache", Path("/etc/ld.so.cache").read_bytes())
        for path, uid, mode in spec.dirs:
            add_dir(path, uid, mode)
        for name, kind in spec.shims.items():
            add_file(f"{SHIM_DIR}/{name}", _shim(kind, python), 0o755)
    return buf.getvalue()


def dockerfile(spec: ImageSpec) -> str:
    lines = ["FROM scratch", "ADD rootfs.tar /"]
    for k, v in spec.env.items():
        lines.append(f"ENV {k}={json.dumps(v)}")
    if spec.workdir:
        lines.append(f"WORKDIR {spec.workdir}")
    for v in spec.volumes:
        lines.append(f"VOLUME {json.dumps([v])}")
    if spec.stopsignal:
        lines.append(f"STOPSIGNAL {spec.stopsignal}")
    if spec.user:
        lines.append(f"USER {spec.user}")
    if spec.entrypoint:
        lines.append(f"ENTRYPOINT {json.dumps(spec.entrypoint)}")
    if spec.cmd:
        lines.append(f"CMD {json.dumps(spec.cmd)}")
    return "\n".join(lines) + "\n"


def build_context(spec: ImageSpec, python: str) -> tuple[bytes, str]:
    """(build context tar, content hash)."""
    rootfs = rootfs_tar(spec, python)
    df = dockerfile(spec).encode()
    digest = hashlib.sha256(rootfs + b"\0" + df).hexdigest()[:16]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", df), ("rootfs.tar", rootfs)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), digest


def build_standin_images(
    tags: Mapping[str, Union[str, Sequence[str]]] = DEFAULT_TAGS,
    *,
    engine: Optional[Engine] = None,
    python: Optional[str] = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Build (or reuse, when unchanged) the stand-in image of each kind and tag it with the given
    names. tags: kind (a key of image_specs: vllm, ollama, infinity, speaches, litellm, redis,
    postgres) -> image name or names. Returns {tag: image id}.

    A tag that exists locally without the stand-in label is a real image: refused unless force.
    """
    engine = engine or Engine()
    exe, _ = python_paths(python)
    specs = image_specs(str(Path(exe).parent))
    out: dict[str, str] = {}
    for kind, names in tags.items():
        if kind not in specs:
            raise RehearsalError(f"no stand-in for {kind!r}; known: {sorted(specs)}")
        names = [names] if isinstance(names, str) else list(names)
        for tag in names:
            if "@" in tag:
                raise RehearsalError(f"{tag}: a digest reference cannot be given to a locally built stand-in")
        context, digest = build_context(specs[kind], exe)
        current = {t: engine.inspect_image(t) for t in names}
        for tag, info in current.items():
            labels = ((info or {}).get("Config") or {}).get("Labels") or {}
            if info is not None and STANDIN_LABEL not in labels and not force:
                raise RehearsalError(f"image {tag} exists on this engine and is not a rehearsal stand-in: "
                                     f"refusing to overwrite it (remove it, or pass force=True)")
        if all(((i or {}).get("Config") or {}).get("Labels", {}).get(STANDIN_LABEL) == digest
               for i in current.values() if i is not None) and all(i is not None for i in current.values()):
            ids = {i["Id"] for i in current.values()}
            if len(ids) == 1:
                out.update({t: i["Id"] for t, i in current.items()})
                log(f"[rehearsal] stand-in {kind}: up to date ({', '.join(names)})")
                continue
        t0 = time.monotonic()
        params = [("t", t) for t in names] + [("labels", json.dumps({STANDIN_LABEL: digest, "llmstack.rehearsal.kind": kind})),
                                              ("rm", "1"), ("forcerm", "1")]
        path = "/build?" + urllib.parse.urlencode(params)
        messages = engine.stream("POST", path, raw=context, content_type="application/x-tar", timeout=300)
        image_id = next((m["aux"]["ID"] for m in messages if isinstance(m.get("aux"), dict) and "ID" in m["aux"]), None)
        if image_id is None:
            image_id = engine.inspect_image(names[0])["Id"]
        out.update({t: image_id for t in names})
        log(f"[rehearsal] stand-in {kind}: built in {time.monotonic() - t0:.2f}s ({', '.join(names)})")
    return out


def remove_standin_images(engine: Optional[Engine] = None, log: Callable[[str], None] = print) -> list[str]:
    """Remove every image carrying the stand-in label (all its tags)."""
    engine = engine or Engine()
    images = engine.json("GET", "/images/json", params={"filters": json.dumps({"label": [STANDIN_LABEL]})})
    gone = []
    for img in images:
        engine.request("DELETE", f"/images/{img['Id']}", params={"force": 1})
        gone.extend(img.get("RepoTags") or [img["Id"]])
    for t in gone:
        log(f"[rehearsal] removed stand-in image {t}")
    return gone
