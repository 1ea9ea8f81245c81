"""Smoke test of the rehearsal machinery on a real local Docker engine: a network, a retained
volume, Redis and Postgres from the stand-in images, healthy, reachable by alias and on a port
published on 127.0.0.1; destroy leaves the retained volume (with its data) and nothing else.

Skipped (with the reason) when no engine can be started, unless LLMSTACK_REHEARSAL_REQUIRED=1,
which turns that into a failure (CI sets it once it installs docker.io)."""

from __future__ import annotations

import os
import secrets
import socket
import time

import pytest

from . import docker_api as api
from . import standin_images

pytestmark = pytest.mark.rehearsal

REDIS_TAG = standin_images.DEFAULT_TAGS["redis"]
POSTGRES_TAG = standin_images.DEFAULT_TAGS["postgres"]


@pytest.fixture(scope="module")
def engine():
    t0 = time.monotonic()
    try:
        eng = api.ensure_engine()
    except (api.RehearsalError, OSError, FileNotFoundError) as e:
        if os.environ.get("LLMSTACK_REHEARSAL_REQUIRED") == "1":
            pytest.fail(f"Docker engine required but not available: {e}")
        pytest.skip(f"no Docker engine here and none could be started: {str(e)[:500]}")
    print(f"\n[timing] engine ready: {time.monotonic() - t0:.2f}s")
    return eng


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_ping(port: int, password: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"\r\n") < 2 and time.monotonic() < deadline:  # AUTH's reply, PING's reply
            chunk = s.recv(1024)
            if not chunk:
                break
            data += chunk
        return data


@pytest.fixture
def run(engine):
    """A fresh run label; whatever the test leaves (retained volumes included) is removed after it."""
    label = f"smoke-{secrets.token_hex(4)}"
    yield label
    api.cleanup(engine, run_label=label, log=lambda _: None)


def test_redis_and_postgres_healthy_then_destroy_keeps_retained_volume(engine, run):
    t0 = time.monotonic()
    built = standin_images.build_standin_images({"redis": REDIS_TAG, "postgres": POSTGRES_TAG}, engine=engine)
    print(f"[timing] stand-in images (redis, postgres): {time.monotonic() - t0:.2f}s")
    assert set(built) == {REDIS_TAG, POSTGRES_TAG}

    redis_pw = secrets.token_hex(24)
    pg_pw = secrets.token_hex(24)
    port = free_port()
    net, redis_vol, pg_vol = f"{run}-net", f"{run}-redis-data", f"{run}-pg-data"
    redis_name, pg_name = f"{run}-redis", f"{run}-postgres"
    health = {"interval": "1s", "timeout": "5s", "retries": 3.0, "startPeriod": "60s"}
    records = [
        {"type": api.REMOTE_IMAGE, "name": "redis-image", "inputs": {"name": REDIS_TAG, "keepLocally": True},
         "outputs": {"imageId": "sha256:fake-redis-image"}},
        {"type": api.REMOTE_IMAGE, "name": "pg-image", "inputs": {"name": POSTGRES_TAG, "keepLocally": True},
         "outputs": {"imageId": "sha256:fake-pg-image"}},
        {"type": api.NETWORK, "name": "net", "inputs": {"name": net}},
        {"type": api.VOLUME, "name": "redis-data", "retainOnDelete": True,
         "inputs": {"name": redis_vol, "labels": [{"label": "llmstack.retained", "value": "true"}]}},
        {"type": api.VOLUME, "name": "pg-data", "inputs": {"name": pg_vol}},
        {"type": api.CONTAINER, "name": "redis", "inputs": {
            "name": redis_name, "image": "sha256:fake-redis-image",
            "command": ["sh", "-c", 'exec redis-server --requirepass "$REDIS_PASSWORD" --appendonly yes'],
            "envs": {api._SIG_KEY: api._SECRET_SIG, "value": [f"REDIS_PASSWORD={redis_pw}"]},
            "networksAdvanced": [{"name": net, "aliases": ["redis"]}],
            "volumes": [{"volumeName": redis_vol, "containerPath": "/data"}],
            "ports": [{"internal": 6379.0, "external": float(port), "ip": "127.0.0.1"}],
            "healthcheck": {"tests": ["CMD-SHELL", 'redis-cli -a "$REDIS_PASSWORD" --no-auth-warning ping | grep -q PONG'],
                            **health},
            "restart": "unless-stopped", "wait": True, "waitTimeout": 60.0,
            "labels": [{"label": "llmstack.component", "value": "redis"}]}},
        {"type": api.CONTAINER, "name": "postgres", "inputs": {
            "name": pg_name, "image": "sha256:fake-pg-image",
            "envs": ["POSTGRES_USER=u", f"POSTGRES_PASSWORD={pg_pw}", "POSTGRES_DB=db"],
            "networksAdvanced": [{"name": net, "aliases": ["postgres"]}],
            "volumes": [{"volumeName": pg_vol, "containerPath": "/var/lib/postgresql/data"}],
            "healthcheck": {"tests": ["CMD", "pg_isready", "-U", "u", "-d", "db", "-h", "127.0.0.1"], **health},
            "restart": "unless-stopped", "wait": True, "waitTimeout": 90.0}},
    ]
    images = api.image_map(records)
    binds = standin_images.rehearsal_binds()
    try:
        dep = api.up(records, images=images, binds=binds, run_label=run, engine=engine)
        print(f"[timing] redis healthy: {dep.timings['redis']:.2f}s, postgres healthy: {dep.timings['postgres']:.2f}s")

        # a published port on 127.0.0.1 answers from the host, with the password
        assert redis_ping(port, redis_pw) == b"+OK\r\n+PONG\r\n"
        assert b"PONG" not in redis_ping(port, "wrong")  # -WRONGPASS, -NOAUTH
        # containers reach each other by alias on the user-defined network
        code, out = engine.exec(pg_name, ["sh", "-c", 'redis-cli -h redis -a "$1" --no-auth-warning set k kept',
                                          "sh", redis_pw])
        assert code == 0 and "OK" in out, out
        # Postgres: password auth over TCP, the database exists, as user postgres
        code, out = engine.exec(pg_name, ["psql", f"postgresql://u:{pg_pw}@postgres:5432/db", "-Atc",
                                          "select current_database(), current_user"])
        assert code == 0 and out.strip() == "db|u", out
        # (like the real image, 127.0.0.1 is trusted inside the container; over the network it is not)
        code, out = engine.exec(pg_name, ["psql", f"postgresql://u:wrong-{pg_pw}@postgres:5432/db", "-c", "select 1"])
        assert code != 0 and "password authentication failed" in out, out
        code, out = engine.exec(pg_name, ["sh", "-c", "ps -o user= -p 1 2>/dev/null || stat -c %U /proc/1"])
        assert out.split()[-1] == "postgres", out
        code, out = engine.exec(redis_name, ["redis-cli", "-a", redis_pw, "--no-auth-warning", "save"])
        assert code == 0, out
    finally:
        t1 = time.monotonic()
        report = api.destroy(records, engine=engine, run_label=run)
        print(f"[timing] destroy: {time.monotonic() - t1:.2f}s")

    assert f"volume {redis_vol}" in report.retained
    assert engine.inspect_container(redis_name) is None and engine.inspect_container(pg_name) is None
    assert engine.inspect_network(net) is None
    assert engine.inspect_volume(pg_vol) is None
    left = [v["name"] for v in api.leftover_volumes(engine, run_label=run)]
    assert left == [redis_vol]

    # the retained volume still holds the data: a new Redis on it sees the key
    again = [r for r in records if r["name"] in ("redis-image", "net", "redis-data", "redis")]
    again[-1] = {**again[-1], "inputs": {**again[-1]["inputs"], "ports": []}}
    try:
        api.up(again, images=images, binds=binds, run_label=run, engine=engine)
        code, out = engine.exec(redis_name, ["redis-cli", "-a", redis_pw, "--no-auth-warning", "get", "k"])
        assert out.strip() == "kept", out
    finally:
        api.destroy(again, engine=engine, run_label=run)
    assert [v["name"] for v in api.leftover_volumes(engine, run_label=run)] == [redis_vol]
    api.cleanup(engine, run_label=run)
    assert api.leftover_volumes(engine, run_label=run) == []


def test_wait_fails_with_health_log_and_logs(engine, run):
    standin_images.build_standin_images({"redis": REDIS_TAG}, engine=engine, log=lambda _: None)
    record = {"type": api.CONTAINER, "name": "bad", "inputs": {
        "name": f"{run}-bad", "image": REDIS_TAG,
        "command": ["sh", "-c", "echo starting-but-never-healthy; exec sleep 60"],
        "healthcheck": {"tests": ["CMD-SHELL", "echo probe-says-no; exit 1"], "interval": "1s", "retries": 1.0},
        "wait": True, "waitTimeout": 4.0}}
    with pytest.raises(api.RehearsalError) as err:
        api.up([record], images={REDIS_TAG: REDIS_TAG}, binds=standin_images.rehearsal_binds(),
               run_label=run, engine=engine)
    text = str(err.value)
    assert "not healthy after 4s" in text and "probe-says-no" in text and "starting-but-never-healthy" in text
    assert err.value.deployment.created == []  # type: ignore[attr-defined]
