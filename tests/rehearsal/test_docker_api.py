"""The recorded-inputs -> Docker Engine API mapping, without an engine."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from . import docker_api as api
from .docker_api import RehearsalError, UnhandledInput

SECRET = {api._SIG_KEY: api._SECRET_SIG}
IMAGE_ID = "sha256:fake-redis-image"
IMAGES = {IMAGE_ID: "redis:8.10.2", "redis:8.10.2": "redis:8.10.2"}


def secret(value):
    return {**SECRET, "value": value}


def container(**inputs):
    base = {"name": "redis", "image": IMAGE_ID}
    base.update(inputs)
    return {"type": api.CONTAINER, "name": "gateway-redis", "inputs": base}


# --- durations, numbers, wire values ----------------------------------------------------------


@pytest.mark.parametrize("text, ns", [
    ("30s", 30_000_000_000), ("15m", 900_000_000_000), ("1h30m", 5_400_000_000_000),
    ("1.5s", 1_500_000_000), ("300ms", 300_000_000), ("2us", 2_000), ("2µs", 2_000), ("10ns", 10),
    ("0", 0), ("0s", 0), ("1h0m0s", 3_600_000_000_000), ("-1s", -1_000_000_000), (".5s", 500_000_000),
])
def test_parse_duration(text, ns):
    assert api.parse_duration(text) == ns


@pytest.mark.parametrize("bad", ["", "30", "s", "1x", "1 s", "1s ", "s1", "1d", 30, None])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        api.parse_duration(bad)


def test_unwrap_secrets_and_numbers():
    raw = {"envs": secret(["A=1", "B=2"]), "uploads": secret([{"file": "/a", "content": secret("x")}])}
    assert api.unwrap(raw) == {"envs": ["A=1", "B=2"], "uploads": [{"file": "/a", "content": "x"}]}
    assert api.as_int(6379.0, "p") == 6379
    with pytest.raises(RehearsalError):
        api.as_int(1.5, "p")
    with pytest.raises(RehearsalError):
        api.as_int(True, "p")


def test_unknown_values_fail():
    with pytest.raises(RehearsalError, match="unknown value"):
        api.unwrap({"image": api._UNKNOWN}, "c")
    with pytest.raises(RehearsalError, match="unknown output"):
        api.unwrap({api._SIG_KEY: api._OUTPUT_SIG, "secret": False}, "c")
    with pytest.raises(RehearsalError, match="signature"):
        api.unwrap({api._SIG_KEY: "5cf8f73096256a8f31e491e813e4eb8e", "urn": "x"}, "c")


# --- containers ---------------------------------------------------------------------------------


def full_record():
    return container(
        command=["sh", "-c", 'exec redis-server --requirepass "$REDIS_PASSWORD" --appendonly yes'],
        entrypoints=["/usr/local/bin/docker-entrypoint.sh"],
        envs=secret(["REDIS_PASSWORD=pw", "TZ=UTC"]),
        networksAdvanced=[{"name": "llm", "aliases": ["redis", "cache"]}, {"name": "other"}],
        volumes=[{"volumeName": "llmstack-redis", "containerPath": "/data"},
                 {"volumeName": "cfg", "containerPath": "/cfg", "readOnly": True}],
        ports=[{"internal": 6379.0, "external": 16379.0, "ip": "127.0.0.1"},
               {"internal": 9000.0, "protocol": "udp"}],
        uploads=secret([{"file": "/app/config.yaml", "content": "a: 1\n"}]),
        healthcheck={"tests": ["CMD-SHELL", 'redis-cli -a "$REDIS_PASSWORD" ping | grep -q PONG'],
                     "interval": "30s", "timeout": "10s", "retries": 3.0, "startPeriod": "15m"},
        restart="unless-stopped",
        labels=[{"label": "llmstack.component", "value": "redis"}],
        deviceRequests=[{"driver": "nvidia", "capabilities": ["gpu"], "count": -1.0}],
        ipcMode="host", shmSize=1024.0, user="1000:1000",
        wait=True, waitTimeout=1080.0, mustRun=True,
    )


def test_container_full_mapping():
    spec = api.container_spec(full_record(), images=IMAGES, binds=["/usr:/usr:ro"], run_label="run1")
    assert spec.name == "redis" and spec.resource == "gateway-redis"
    assert spec.body == {
        "Image": "redis:8.10.2",
        "Cmd": ["sh", "-c", 'exec redis-server --requirepass "$REDIS_PASSWORD" --appendonly yes'],
        "Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"],
        "User": "1000:1000",
        "Env": ["REDIS_PASSWORD=pw", "TZ=UTC"],
        "Labels": {"llmstack.component": "redis", api.REHEARSAL_LABEL: "run1"},
        "ExposedPorts": {"6379/tcp": {}, "9000/udp": {}},
        "NetworkingConfig": {"EndpointsConfig": {"llm": {"Aliases": ["redis", "cache"]}}},
        "Healthcheck": {"Test": ["CMD-SHELL", 'redis-cli -a "$REDIS_PASSWORD" ping | grep -q PONG'],
                        "Interval": 30 * 10**9, "Timeout": 10 * 10**9, "StartPeriod": 900 * 10**9, "Retries": 3},
        "HostConfig": {
            "Binds": ["llmstack-redis:/data", "cfg:/cfg:ro", "/usr:/usr:ro"],
            "PortBindings": {"6379/tcp": [{"HostIp": "127.0.0.1", "HostPort": "16379"}],
                             "9000/udp": [{"HostIp": "0.0.0.0", "HostPort": ""}]},
            "NetworkMode": "llm",
            "RestartPolicy": {"Name": "unless-stopped"},
            "IpcMode": "host",
            "ShmSize": 1024 * 1024 * 1024,
        },
    }
    assert spec.extra_networks == [("other", {})]
    assert spec.wait and spec.wait_timeout == 1080.0 and spec.must_run and spec.start
    assert spec.left_out == ["deviceRequests[0]: all nvidia gpus (left out: no GPU here)"]
    assert "DeviceRequests" not in json.dumps(spec.body)
    assert [u.path for u in spec.uploads] == ["/app/config.yaml"]
    assert any("bind mounts" in a for a in spec.rehearsal_additions)


def test_container_minimal_leaves_image_defaults():
    spec = api.container_spec(container(), images=IMAGES, run_label="r")
    assert spec.body == {"Image": "redis:8.10.2", "Labels": {api.REHEARSAL_LABEL: "r"}, "HostConfig": {}}
    assert not spec.wait and spec.wait_timeout == 60.0 and spec.start and spec.must_run and spec.remove_volumes


def test_image_by_tag_and_unknown_image():
    assert api.container_spec(container(image="redis:8.10.2"), images=IMAGES).body["Image"] == "redis:8.10.2"
    with pytest.raises(RehearsalError, match="not a known stand-in image"):
        api.container_spec(container(image="sha256:other"), images=IMAGES)


@pytest.mark.parametrize("inputs, key", [
    ({"privileged": True}, "privileged"),
    ({"mounts": [{"target": "/x", "type": "volume"}]}, "mounts"),
    ({"networkMode": "host"}, "networkMode"),
    ({"capabilities": {"adds": ["NET_ADMIN"]}}, "capabilities"),
    ({"ports": [{"internal": 1.0, "hostIp": "x"}]}, "hostIp"),
    ({"healthcheck": {"tests": ["CMD", "true"], "startPeriodX": "1s"}}, "startPeriodX"),
    ({"volumes": [{"volumeName": "v", "containerPath": "/v", "fromContainer": "c"}]}, "fromContainer"),
    ({"networksAdvanced": [{"name": "n", "macAddress": "02:42:ac:11:00:02"}]}, "macAddress"),
    ({"uploads": [{"file": "/f", "source": "/etc/passwd"}]}, "source"),
    ({"uploads": [{"file": "/f", "content": "x", "owner": "nobody"}]}, "owner"),
    ({"labels": [{"label": "a", "value": "b", "extra": 1}]}, "extra"),
    ({"deviceRequests": [{"driver": "nvidia", "capabilities": ["gpu"], "count": -1, "options": {"a": "b"}}]},
     "options"),
])
def test_unhandled_keys_fail_loudly(inputs, key):
    with pytest.raises(UnhandledInput) as err:
        api.container_spec(container(**inputs), images=IMAGES)
    assert err.value.key == key
    assert "gateway-redis" in str(err.value) and repr(key) in str(err.value)


def test_ignored_keys_are_explicit():
    assert not set(api.CONTAINER_IGNORED) & api.CONTAINER_HANDLED
    spec = api.container_spec(container(logs=True, containerReadRefreshTimeoutMilliseconds=15000.0),
                              images=IMAGES)
    assert "logs" not in json.dumps(spec.body)


def test_none_means_not_set():
    spec = api.container_spec(container(privileged=None, volumes=None), images=IMAGES)
    assert spec.body["HostConfig"] == {}


@pytest.mark.parametrize("req, ok", [
    ({"driver": "nvidia", "capabilities": ["gpu"], "count": -1}, True),
    ({"driver": "nvidia", "capabilities": ["gpu"], "deviceIds": ["0", "1"]}, True),
    ({"driver": "nvidia", "capabilities": ["compute", "gpu"], "deviceIds": ["GPU-abc"]}, True),
    ({"driver": "nvidia", "capabilities": [["gpu"]], "count": -1}, False),   # nested list: fails in 5.x
    ({"capabilities": ["gpu"], "count": -1}, False),                         # schema default driver is cdi
    ({"driver": "cdi", "deviceIds": ["nvidia.com/gpu=all"]}, False),
    ({"driver": "nvidia", "capabilities": ["utility"], "count": -1}, False),
    ({"driver": "nvidia", "capabilities": ["gpu"], "count": 1}, False),
    ({"driver": "nvidia", "capabilities": ["gpu"]}, False),
    ({"driver": "nvidia", "capabilities": ["gpu"], "count": -1, "deviceIds": ["0"]}, False),
    ({"driver": "nvidia", "capabilities": ["gpu"], "deviceIds": []}, False),
    ({"driver": "nvidia", "capabilities": ["gpu"], "deviceIds": [0]}, False),
])
def test_device_requests_shape(req, ok):
    record = container(deviceRequests=[req])
    if ok:
        spec = api.container_spec(record, images=IMAGES)
        assert len(spec.left_out) == 1 and "DeviceRequests" not in spec.body["HostConfig"]
    else:
        with pytest.raises(RehearsalError):
            api.container_spec(record, images=IMAGES)


def test_gpus_string_validated_and_left_out():
    assert api.container_spec(container(gpus="all"), images=IMAGES).left_out == ["gpus=all (left out: no GPU here)"]
    with pytest.raises(RehearsalError, match="conflict"):
        api.container_spec(container(gpus="all", deviceRequests=[{"driver": "nvidia", "capabilities": ["gpu"],
                                                                 "count": -1}]), images=IMAGES)


@pytest.mark.parametrize("inputs", [
    {"restart": "sometimes"},
    {"healthcheck": {"tests": ["curl", "x"]}},
    {"healthcheck": {"tests": ["CMD", "x"], "interval": "30"}},
    {"envs": ["NOVALUE"]},
    {"volumes": [{"volumeName": "v", "containerPath": "data"}]},
    {"uploads": [{"file": "relative.yaml", "content": "x"}]},
    {"uploads": [{"file": "/a", "content": "x", "contentBase64": "eA=="}]},
    {"waitTimeout": 0},
    {"shmSize": 1.5},
    {"command": "redis-server"},
])
def test_bad_values_fail(inputs):
    with pytest.raises(RehearsalError):
        api.container_spec(container(**inputs), images=IMAGES)


def test_no_name_fails():
    rec = container()
    del rec["inputs"]["name"]
    with pytest.raises(RehearsalError, match="no `name`"):
        api.container_spec(rec, images=IMAGES)


def test_env_overrides_and_labels():
    rec = container(envs=["DATABASE_URL=postgres://x", "A=1"])
    spec = api.container_spec(rec, images=IMAGES, env_overrides={"DATABASE_URL": None, "B": "2", "A": "3"})
    assert spec.body["Env"] == ["A=3", "B=2"]
    assert {"env DATABASE_URL removed", "env B set", "env A set"} <= set(spec.rehearsal_additions)


def test_restart_no_and_on_failure():
    assert api.container_spec(container(restart="no"), images=IMAGES).body["HostConfig"]["RestartPolicy"] == {"Name": ""}
    spec = api.container_spec(container(restart="on-failure", maxRetryCount=3.0), images=IMAGES)
    assert spec.body["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_lifecycle_keys():
    spec = api.container_spec(container(start=False, mustRun=False, destroyGraceSeconds=30.0, removeVolumes=False,
                                        stopSignal="SIGINT", stopTimeout=20.0, workingDir="/w", hostname="h",
                                        memory=512.0, init=True), images=IMAGES)
    assert (spec.start, spec.must_run, spec.stop_timeout, spec.remove_volumes) == (False, False, 30, False)
    assert spec.body["StopSignal"] == "SIGINT" and spec.body["StopTimeout"] == 20
    assert spec.body["WorkingDir"] == "/w" and spec.body["Hostname"] == "h"
    assert spec.body["HostConfig"]["Memory"] == 512 * 1024 * 1024 and spec.body["HostConfig"]["Init"] is True


def test_upload_archive():
    rec = container(uploads=[{"file": "/app/config.yaml", "content": "model_list: []\n"},
                             {"file": "/bin/run.sh", "contentBase64": "ZWNobyBoaQ==", "executable": True},
                             {"file": "/etc/x", "content": "x", "permissions": "0600", "owner": "1000", "group": "1000"}])
    ups = api.container_spec(rec, images=IMAGES).uploads
    got = []
    for u in ups:
        directory, data = u.archive()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            (m,) = tar.getmembers()
            got.append((directory, m.name, oct(m.mode), m.uid, m.gid, tar.extractfile(m).read()))
    # Like the provider: the whole path in the tar, extracted at / (missing directories are created).
    assert got == [("/", "app/config.yaml", "0o644", 0, 0, b"model_list: []\n"),
                   ("/", "bin/run.sh", "0o744", 0, 0, b"echo hi"),
                   ("/", "etc/x", "0o600", 1000, 1000, b"x")]


# --- networks, volumes, images, commands --------------------------------------------------------


def test_network_body():
    rec = {"type": api.NETWORK, "name": "net", "inputs": {"name": "llm", "ipamConfigs": [{"subnet": "192.168.0.0/24"}]}}
    assert api.network_body(rec, run_label="r") == {
        "Name": "llm", "Driver": "bridge", "CheckDuplicate": True,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": "192.168.0.0/24"}]},
        "Labels": {api.REHEARSAL_LABEL: "r"}}
    with pytest.raises(UnhandledInput, match="scope"):
        api.network_body({**rec, "inputs": {"name": "llm", "scope": "swarm"}})
    with pytest.raises(UnhandledInput, match="auxAddressX"):
        api.network_body({**rec, "inputs": {"name": "llm", "ipamConfigs": [{"auxAddressX": {}}]}})


def test_volume_body():
    rec = {"type": api.VOLUME, "name": "v", "retainOnDelete": True,
           "inputs": {"name": "llmstack-pg", "labels": [{"label": "llmstack.retained", "value": "true"}]}}
    assert api.volume_body(rec, run_label="r") == {
        "Name": "llmstack-pg", "Driver": "local", "Labels": {"llmstack.retained": "true", api.REHEARSAL_LABEL: "r"}}
    with pytest.raises(UnhandledInput, match="cluster"):
        api.volume_body({**rec, "inputs": {"name": "x", "cluster": {}}})


def test_image_map_and_spec():
    recs = [{"type": api.REMOTE_IMAGE, "name": "redis-image", "inputs": {"name": "redis:8.10.2", "keepLocally": True},
             "outputs": {"imageId": "sha256:abc"}},
            {"type": api.REMOTE_IMAGE, "name": "pg-image", "inputs": {"name": "postgres:17"}}]
    assert api.image_map(recs, {"pg-image": "sha256:def"}) == {
        "redis:8.10.2": "redis:8.10.2", "sha256:abc": "redis:8.10.2",
        "postgres:17": "postgres:17", "sha256:def": "postgres:17"}
    with pytest.raises(UnhandledInput, match="platform"):
        api.image_spec({"type": api.REMOTE_IMAGE, "name": "i", "inputs": {"name": "x:1", "platform": "linux/arm64"}})


def test_command_spec():
    rec = {"type": api.LOCAL_COMMAND, "name": "pull", "inputs": {
        "create": "docker exec ollama ollama pull qwen", "delete": "true", "environment": {"DOCKER_HOST": "unix:///x"},
        "triggers": ["a"]}}
    spec = api.command_spec(rec)
    assert (spec.create, spec.delete, spec.environment, spec.interpreter) == (
        "docker exec ollama ollama pull qwen", "true", {"DOCKER_HOST": "unix:///x"}, ["/bin/sh", "-c"])
    with pytest.raises(UnhandledInput, match="stdin"):
        api.command_spec({**rec, "inputs": {"create": "x", "stdin": "y"}})


def test_run_command_reports_output():
    spec = api.CommandSpec("c", "echo out; echo err >&2; exit 3", None, {"X": "1"}, None, ["/bin/sh", "-c"])
    with pytest.raises(RehearsalError, match="exited 3(.|\n)*out(.|\n)*err"):
        api.run_command(spec, "create", log=lambda _: None)
    ok = api.CommandSpec("c", 'printf %s "$X"', None, {"X": "1"}, None, ["/bin/sh", "-c"])
    assert api.run_command(ok, "create", log=lambda _: None) == "1"


def test_plan_order_and_checks():
    recs = [
        {"type": "llmstack:index:LiteLLMProxy", "name": "gw", "inputs": {}},
        {"type": "pulumi:providers:docker", "name": "host", "inputs": {"host": "ssh://x"}},
        container(),
        {"type": api.LOCAL_COMMAND, "name": "pull", "inputs": {"create": "true"}},
        {"type": api.VOLUME, "name": "v", "inputs": {"name": "vol"}},
        {"type": api.REMOTE_IMAGE, "name": "img", "inputs": {"name": "redis:8.10.2"}},
        {"type": api.NETWORK, "name": "n", "inputs": {"name": "llm"}},
    ]
    with pytest.raises(RehearsalError, match="llmstack:index:LiteLLMProxy"):
        api.plan(recs, images=IMAGES)
    steps = api.plan(recs, images=IMAGES,
                     ignore_types=(*api.DEFAULT_IGNORED_TYPE_PREFIXES, "llmstack:"))
    assert [s.kind for s in steps] == ["network", "volume", "image", "container", "command"]
    with pytest.raises(RehearsalError, match="registered twice"):
        api.plan([container(), container()], images=IMAGES)
    with pytest.raises(RehearsalError, match="does not create"):
        api.plan([container()], images=IMAGES, env_overrides={"litellm": {"A": None}})


# --- several Docker hosts: each record on the engine of its provider ----------------------------


class RecordingEngine(api.Engine):
    """Stands in for a Docker engine (an external service): records each call, answers like an empty engine
    where only what it was asked to create exists, every object carrying the rehearsal label."""

    def __init__(self, socket_path: str):
        super().__init__(socket_path)
        self.calls: list[tuple[str, str]] = []
        self.objects: set[str] = set()   # "/containers/<name>", "/networks/<name>", "/volumes/<name>"

    def request(self, method, path, *, params=None, body=None, raw=None, content_type="application/json",
                timeout=None, ok=(200, 201, 204, 304)):
        self.calls.append((method, path))
        labelled = {"Labels": {api.REHEARSAL_LABEL: "run"}}
        if method == "POST" and path.endswith("/create"):
            kind = path.split("/")[1]
            name = (params or {}).get("name") or body["Name"]
            self.objects.add(f"/{kind}/{name}")
            return b"{}"
        if method == "GET" and path.endswith("/json") and path.startswith("/containers/") and path != "/containers/json":
            name = path.split("/")[2]
            if f"/containers/{name}" not in self.objects:
                raise api.EngineError(method, path, 404, "no such container")
            return json.dumps({"State": {"Running": True}, "Config": labelled}).encode()
        if method == "GET" and path.split("/")[1] in ("networks", "volumes") and path.count("/") == 2:
            if path not in self.objects:
                raise api.EngineError(method, path, 404, "not found")
            return json.dumps(labelled).encode()
        if method == "GET" and path == "/containers/json":
            return json.dumps([{"Id": o.split("/")[2], "Names": ["/" + o.split("/")[2]]}
                               for o in sorted(self.objects) if o.startswith("/containers/")]).encode()
        if method == "GET" and path == "/networks":
            return json.dumps([{"Id": o.split("/")[2], "Name": o.split("/")[2]}
                               for o in sorted(self.objects) if o.startswith("/networks/")]).encode()
        if method == "GET" and path == "/volumes":
            return json.dumps({"Volumes": [{"Name": o.split("/")[2], "Labels": labelled["Labels"]}
                                           for o in sorted(self.objects) if o.startswith("/volumes/")]}).encode()
        if method == "DELETE":
            self.objects.discard(path if path.count("/") == 2 else "/".join(path.split("/")[:3]))
            return b""
        return b""

    def created(self) -> list[str]:
        return [path for method, path in self.calls if method == "POST" and path.endswith("/create")]


def two_host_records():
    def on(host, rec):
        return {**rec, "provider": f"host-{host}"}

    return [
        {"type": api.DOCKER_PROVIDER, "name": "host-a", "inputs": {"host": "unix:///var/run/docker.sock"}},
        {"type": api.DOCKER_PROVIDER, "name": "host-b", "inputs": {"host": "unix:///run/llmstack-b/docker.sock"}},
        on("a", {"type": api.NETWORK, "name": "network-a", "inputs": {"name": "llm"}}),
        on("b", {"type": api.NETWORK, "name": "network-b", "inputs": {"name": "llm"}}),  # same Docker name, other host
        on("b", {"type": api.VOLUME, "name": "cache-b", "inputs": {"name": "cache"}}),
        on("a", {**container(), "name": "redis-a"}),
        on("b", {**container(name="relay"), "name": "relay-b"}),
    ]


def test_provider_sockets_come_from_the_provider_records():
    assert api.provider_sockets(two_host_records()) == {"host-a": "/var/run/docker.sock",
                                                       "host-b": api.ENGINE_B_SOCKET}
    ssh = [{"type": api.DOCKER_PROVIDER, "name": "host-gpu", "inputs": {"host": "ssh://root@gpu-01"}}]
    with pytest.raises(RehearsalError, match="host-gpu.*not a unix:// socket"):
        api.provider_sockets(ssh)


def test_up_and_destroy_send_each_record_to_its_providers_engine():
    a, b = RecordingEngine("/a.sock"), RecordingEngine("/b.sock")
    engines = {"host-a": a, "host-b": b}
    recs = two_host_records()
    dep = api.up(recs, images=IMAGES, engines=engines, log=lambda _: None)
    assert a.created() == ["/networks/create", "/containers/create"]
    assert b.created() == ["/networks/create", "/volumes/create", "/containers/create"]
    assert a.objects == {"/networks/llm", "/containers/redis"}
    assert b.objects == {"/networks/llm", "/volumes/cache", "/containers/relay"}
    assert dep.created == ["network-a", "network-b", "cache-b", "redis-a", "relay-b"]

    report = api.destroy(recs, engines=engines, engine=a, run_label="run", log=lambda _: None)
    assert sorted(report.removed) == ["container redis", "container relay", "network llm", "network llm", "volume cache"]
    assert a.objects == set() and b.objects == set()


def test_a_provider_without_an_engine_fails_before_anything_is_created():
    a = RecordingEngine("/a.sock")
    with pytest.raises(RehearsalError, match="network-b: its Docker provider 'host-b' has no engine"):
        api.up(two_host_records(), images=IMAGES, engines={"host-a": a}, log=lambda _: None)
    assert a.calls == []


def test_without_engines_every_record_goes_to_the_one_engine():
    a = RecordingEngine("/a.sock")
    recs = [r for r in two_host_records() if r["name"] != "network-b"]
    api.up(recs, images=IMAGES, engine=a, log=lambda _: None)
    assert a.objects == {"/networks/llm", "/volumes/cache", "/containers/redis", "/containers/relay"}


def test_cleanup_and_leftover_volumes_cover_every_engine():
    a, b = RecordingEngine("/a.sock"), RecordingEngine("/b.sock")
    a.objects = {"/containers/gateway", "/volumes/pg"}
    b.objects = {"/containers/relay", "/networks/llm", "/volumes/cache"}
    engines = {"host-a": a, "host-b": b, "host-a-again": a}
    left = api.leftover_volumes(a, engines=engines)
    assert sorted((v["engine"], v["name"]) for v in left) == [("/a.sock", "pg"), ("/b.sock", "cache")]
    gone = api.cleanup(a, engines=engines, log=lambda _: None)
    assert sorted(gone) == ["container gateway", "container relay", "network llm", "volume cache", "volume pg"]
    assert a.objects == set() and b.objects == set()
    assert api.leftover_volumes(a, engines=engines) == []


def test_the_same_docker_name_once_per_host():
    recs = two_host_records()
    steps = api.plan(recs, images=IMAGES)
    assert [s.record["name"] for s in steps if s.kind == "network"] == ["network-a", "network-b"]
    twice = [*recs, {**recs[3], "name": "network-b2"}]
    with pytest.raises(RehearsalError, match="network 'llm' registered twice on host-b"):
        api.plan(twice, images=IMAGES)


def test_ensure_engine_starts_engine_b_with_dockerd_sh_b(monkeypatch):
    ran: list[list[str]] = []

    class Down(api.Engine):
        def ping(self):
            return bool(ran)

    def fake_run(argv, **kw):
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(api.subprocess, "run", fake_run)
    api.ensure_engine(Down(api.ENGINE_B_SOCKET))
    api.ensure_engine(Down("/var/run/docker.sock"))
    assert [argv[2:] for argv in ran] == [["b"]]  # the second engine answered at once: nothing ran for it
    assert ran[0][1].endswith("tests/rehearsal/dockerd.sh")


def test_logs_demux():
    frames = b"\x01\x00\x00\x00\x00\x00\x00\x03out" + b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"
    assert api.demux_logs(frames) == "outerr\n"
    assert api.demux_logs(b"plain text") == "plain text"


# --- the wire format pulumi-docker 5.2 really produces under mocks ----------------------------------

MOCK_PROGRAM = textwrap.dedent('''
    import json, sys
    import pulumi
    records = []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            outputs = dict(args.inputs)
            if args.typ == "docker:index/remoteImage:RemoteImage":
                outputs["imageId"] = "sha256:fake-" + args.name
            records.append({"type": args.typ, "name": args.name, "inputs": args.inputs, "outputs": outputs})
            return args.name + "-id", outputs

        def call(self, args):
            return {}

    pulumi.runtime.set_mocks(Mocks(), project="p", stack="s", preview=False)
    import pulumi_docker as docker

    img = docker.RemoteImage("img", name="redis:8.10.2", keep_locally=True)
    net = docker.Network("net", name="llm", ipam_configs=[docker.NetworkIpamConfigArgs(subnet="192.168.0.0/24")])
    vol = docker.Volume("vol", name="redis-data", labels=[docker.VolumeLabelArgs(label="a", value="b")],
                        opts=pulumi.ResourceOptions(retain_on_delete=True))
    c = docker.Container("redis", name="redis", image=img.image_id, command=["redis-server"],
        envs=[pulumi.Output.secret("REDIS_PASSWORD=x"), "A=b"],
        networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=net.name, aliases=["redis"])],
        volumes=[docker.ContainerVolumeArgs(volume_name=vol.name, container_path="/data")],
        ports=[docker.ContainerPortArgs(internal=6379, external=16379, ip="127.0.0.1")],
        healthcheck=docker.ContainerHealthcheckArgs(tests=["CMD", "true"], interval="30s", retries=3,
                                                    start_period="1m", timeout="10s"),
        device_requests=[docker.ContainerDeviceRequestArgs(driver="nvidia", capabilities=["gpu"], count=-1)],
        uploads=[docker.ContainerUploadArgs(file="/app/c.yaml", content=pulumi.Output.secret("k: v"))],
        labels=[docker.ContainerLabelArgs(label="l", value="v")],
        wait=True, wait_timeout=300, shm_size=1024, ipc_mode="host", restart="unless-stopped", user="1000")

    def done(_):
        print(json.dumps(records))
        sys.stdout.flush()
    result = pulumi.Output.all(c.id, vol.id, net.id).apply(done)
''')


def test_records_from_real_pulumi_mocks(tmp_path: Path):
    pytest.importorskip("pulumi_docker")
    script = tmp_path / "prog.py"
    script.write_text(MOCK_PROGRAM)
    runner = tmp_path / "run.py"
    runner.write_text(textwrap.dedent(f'''
        import pulumi
        @pulumi.runtime.test
        def test_program():
            import runpy
            return runpy.run_path({str(script)!r})["result"]
    '''))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(runner)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("[{")]
    assert lines, proc.stdout + proc.stderr
    records = json.loads(lines[-1])
    for rec in records:
        rec["retainOnDelete"] = rec["name"] == "vol"
    images = api.image_map(records)
    steps = api.plan(records, images=images, run_label="r")
    assert [s.kind for s in steps] == ["network", "volume", "image", "container"]
    spec = steps[-1].spec
    assert spec.body["Image"] == "redis:8.10.2"
    assert spec.body["Env"] == ["REDIS_PASSWORD=x", "A=b"]
    assert spec.body["HostConfig"]["PortBindings"] == {"6379/tcp": [{"HostIp": "127.0.0.1", "HostPort": "16379"}]}
    assert spec.body["HostConfig"]["ShmSize"] == 1024 * 1024 * 1024
    assert spec.body["Healthcheck"]["Retries"] == 3 and spec.wait_timeout == 300
    assert spec.uploads[0].data == b"k: v"
    assert spec.left_out and "DeviceRequests" not in spec.body["HostConfig"]
