"""The model pull mechanism: the argv it runs on each kind of Docker host, and its scripts run for real against fake docker/ssh/ollama binaries."""

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

import config.plan as plan_module
from components import model_pull, ollama
from config.plan import run_program
from tests.conftest import container

UNIX = "unix:///var/run/docker.sock"
SSH = "ssh://deploy@gpu-01:2222"
SSH_OPTS = ["-o", "StrictHostKeyChecking=accept-new", "-i", "/keys/id ed25519"]

# Fake `docker`: logs its argv, answers `container inspect` from $FAKE_STATE, runs `exec <id> argv...` locally.
FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "docker $*" >> "$FAKE_LOG"
[ "$1" = -H ] && shift 2
case "$1" in
  container)
    case "$FAKE_STATE" in
      gone) echo "Error response from daemon: No such container: $6" >&2; exit 1;;
      unreachable) echo "Cannot connect to the Docker daemon. Is the docker daemon running?" >&2; exit 1;;
      *) echo "$FAKE_STATE";;
    esac;;
  exec) printf '%s\\n' "$2" >> "$FAKE_EXEC_TARGETS"; shift 2; exec "$@";;
  *) echo "unexpected docker call: $*" >&2; exit 2;;
esac
"""
# Fake `ssh`: logs its argv, skips options up to `--`, and runs the remote command through a shell as sshd does.
FAKE_SSH = """#!/bin/sh
printf '%s\\n' "ssh $*" >> "$FAKE_LOG"
while [ "$1" != -- ]; do shift; done
shift 2
exec sh -c "$*"
"""
# Fake `ollama`: records each argument it gets on its own line; tags tell it how to behave.
FAKE_OLLAMA = """#!/bin/sh
for arg in "$@"; do printf '[%s]\\n' "$arg" >> "$FAKE_ARGS"; done
case "$1 $2" in
  "pull "*does-not-exist*) echo "pulling manifest" >&2; echo "Error: pull model manifest: file does not exist" >&2; exit 1;;
  "pull "*) echo "pulling manifest"; echo "success";;
  "rm "*missing*) echo "Error: model '$2' not found" >&2; exit 1;;
  "rm "*broken*) echo "Error: could not connect to ollama app, is it running?" >&2; exit 1;;
  "rm "*) echo "deleted '$2'";;
esac
"""


@pytest.fixture
def fakes(tmp_path: Path) -> dict[str, Path]:
    """A bin directory with the fakes, and the files they write."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("ssh", FAKE_SSH), ("ollama", FAKE_OLLAMA)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return {"bin": bin_dir, "log": tmp_path / "calls.log", "args": tmp_path / "ollama-args.log", "targets": tmp_path / "exec-targets.log"}


def run_script(script: str, fakes: dict[str, Path], state: str = "true") -> subprocess.CompletedProcess:
    """Runs a create/delete script as pulumi-command does (`/bin/sh -c`), with the fakes first on PATH."""
    env = {
        "PATH": f"{fakes['bin']}:{os.environ['PATH']}",
        "FAKE_LOG": str(fakes["log"]),
        "FAKE_ARGS": str(fakes["args"]),
        "FAKE_EXEC_TARGETS": str(fakes["targets"]),
        "FAKE_STATE": state,
    }
    return subprocess.run([*model_pull.INTERPRETER, script], env=env, capture_output=True, text=True, timeout=30)


def ollama_args(tag: str, host: str = UNIX) -> model_pull.ModelPullArgs:
    return {
        "docker_host": host,
        "ssh_opts": SSH_OPTS,
        "container_name": "ollama",
        "container_id": "c0ffee",
        "model": tag,
        "pull": ollama.pull_argv(tag),
        "remove": ollama.remove_argv(tag),
    }


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --- the argv per kind of host ---------------------------------------------------------------


@pytest.mark.parametrize("host", [UNIX, "tcp://10.0.0.5:2375", "npipe:////./pipe/docker_engine"])
def test_local_and_tcp_hosts_use_docker_dash_h(host):
    assert model_pull.docker_on_host(host, [], ["exec", "c", "ollama", "pull", "x"]) == [
        "docker", "-H", host, "exec", "c", "ollama", "pull", "x"
    ]


def test_ssh_host_uses_ssh_with_the_stack_ssh_opts_and_port():
    argv = model_pull.docker_on_host(SSH, SSH_OPTS, ["exec", "c", "ollama", "pull", "qwen2.5:0.5b"])
    assert argv == [
        "ssh", *SSH_OPTS, "-p", "2222", "--", "deploy@gpu-01", "docker exec c ollama pull qwen2.5:0.5b"
    ]


def test_ssh_host_without_user_or_port():
    assert model_pull.docker_on_host("ssh://gpu-01", [], ["ps"]) == ["ssh", "--", "gpu-01", "docker ps"]


def test_ssh_remote_command_is_one_quoted_string():
    argv = model_pull.docker_on_host(SSH, [], ["exec", "c", "sh", "-c", 'echo "$1"', "sh", "a b"])
    assert shlex.split(argv[-1]) == ["docker", "exec", "c", "sh", "-c", 'echo "$1"', "sh", "a b"]


def test_resource_names_are_safe_distinct_and_sorted():
    names = model_pull.pull_resource_names("ollama", ["qwen2.5vl:7b-q4_K_M", "qwen2.5:0.5b", "qwen2.5:0.5b"])
    assert names == {"qwen2.5:0.5b": "ollama-pull-qwen2.5-0.5b", "qwen2.5vl:7b-q4_K_M": "ollama-pull-qwen2.5vl-7b-q4_K_M"}
    assert list(names) == sorted(names)


def test_resource_name_collision_is_refused():
    with pytest.raises(ValueError, match="same resource name"):
        model_pull.pull_resource_names("speaches", ["org/model", "org:model"])


# --- the scripts, run -------------------------------------------------------------------------


@pytest.mark.parametrize("host", [UNIX, SSH])
def test_pull_runs_in_the_container_it_depends_on(fakes, host):
    result = run_script(model_pull.pull_script(ollama_args("qwen2.5:0.5b", host), "c0ffee"), fakes)
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout
    assert lines(fakes["args"]) == ["[pull]", "[qwen2.5:0.5b]"]
    assert lines(fakes["targets"]) == ["c0ffee"]
    calls = lines(fakes["log"])
    if host == SSH:
        assert calls[0].startswith("ssh -o StrictHostKeyChecking=accept-new -i /keys/id ed25519 -p 2222 -- deploy@gpu-01 ")
        assert calls[1] == "docker exec c0ffee ollama pull qwen2.5:0.5b"
    else:
        assert calls == [f"docker -H {UNIX} exec c0ffee ollama pull qwen2.5:0.5b"]


@pytest.mark.parametrize("host", [UNIX, SSH])
def test_failed_pull_fails_with_the_servers_message(fakes, host):
    result = run_script(model_pull.pull_script(ollama_args("does-not-exist:1b", host), "c0ffee"), fakes)
    assert result.returncode != 0
    assert "Error: pull model manifest: file does not exist" in result.stderr


def test_arguments_are_quoted_not_interpreted(fakes, tmp_path):
    marker = tmp_path / "pwned"
    tag = f"x'; touch {marker}; echo \"$HOME\" `id`"
    for host in (UNIX, SSH):
        assert run_script(model_pull.pull_script(ollama_args(tag, host), "c0ffee"), fakes).returncode == 0
        assert run_script(model_pull.remove_script(ollama_args(tag, host), "c0ffee"), fakes).returncode == 0
    assert not marker.exists()
    assert lines(fakes["args"]).count(f"[{tag}]") == 4


@pytest.mark.parametrize("host", [UNIX, SSH])
def test_remove_from_a_running_server(fakes, host):
    result = run_script(model_pull.remove_script(ollama_args("qwen2.5:0.5b", host), "c0ffee"), fakes)
    assert result.returncode == 0, result.stderr
    assert "deleted 'qwen2.5:0.5b'" in result.stdout
    assert lines(fakes["args"]) == ["[rm]", "[qwen2.5:0.5b]"]
    # The model is removed from the container the resource pulled it into, by id: never by a name another stack could own.
    assert lines(fakes["targets"]) == ["c0ffee"]
    assert "container inspect --format {{.State.Running}} c0ffee" in fakes["log"].read_text()


def test_remove_of_a_model_the_server_no_longer_has_succeeds(fakes):
    result = run_script(model_pull.remove_script(ollama_args("missing:1b"), "c0ffee"), fakes)
    assert result.returncode == 0, result.stderr
    assert "was not on the server" in result.stdout


@pytest.mark.parametrize("state", ["gone", "false"])
def test_remove_does_not_fail_when_the_container_is_gone_or_stopped(fakes, state):
    result = run_script(model_pull.remove_script(ollama_args("qwen2.5:0.5b"), "c0ffee"), fakes, state=state)
    assert result.returncode == 0, result.stderr
    assert ("is gone" if state == "gone" else "is not running") in result.stdout
    assert not lines(fakes["targets"]), "nothing may be exec'd in a container that is gone or stopped"


def test_remove_fails_loudly_when_the_running_server_refuses(fakes):
    result = run_script(model_pull.remove_script(ollama_args("broken:1b"), "c0ffee"), fakes)
    assert result.returncode != 0
    assert "could not connect to ollama app" in result.stderr


def test_remove_fails_loudly_when_the_docker_host_is_unreachable(fakes):
    result = run_script(model_pull.remove_script(ollama_args("qwen2.5:0.5b"), "c0ffee"), fakes, state="unreachable")
    assert result.returncode != 0
    assert "Cannot connect to the Docker daemon" in result.stderr


# --- the Command resource under mocks ---------------------------------------------------------


@pytest.fixture
def deleted_with(monkeypatch) -> dict[str, str]:
    """Resource name -> its deletedWith URN (the plan recorder does not keep this option)."""
    seen: dict[str, str] = {}
    original = plan_module._RecordingMonitor.RegisterResource

    def record(self, request):
        seen[request.name] = request.deletedWith
        return original(self, request)

    monkeypatch.setattr(plan_module._RecordingMonitor, "RegisterResource", record)
    return seen


def test_pull_command_resource(deleted_with):
    plan = run_program(
        {
            "hosts": {"gpu": {"docker": SSH, "sshOpts": SSH_OPTS}},
            "ollama": {"models": [{"name": "small", "model": "qwen2.5:0.5b"}]},
        }
    )
    pull = plan.named("ollama-pull-qwen2.5-0.5b")
    ollama_container = container(plan, "ollama")
    assert pull.type == "command:local:Command"
    assert pull.inputs["interpreter"] == ["/bin/sh", "-c"]
    assert pull.inputs["triggers"] == [SSH, "dev-ollama", "qwen2.5:0.5b"]
    assert pull.inputs["create"] == model_pull.pull_script(
        {**ollama_args("qwen2.5:0.5b", SSH), "container_name": "dev-ollama", "container_id": "ollama-id"}, "ollama-id"
    )
    assert pull.inputs["delete"] == model_pull.remove_script(
        {**ollama_args("qwen2.5:0.5b", SSH), "container_name": "dev-ollama", "container_id": "ollama-id"}, "ollama-id"
    )
    assert ollama_container.urn in pull.depends_on
    assert deleted_with[pull.name] == plan.named("ollama-models").urn
    assert pull.custom_timeouts == {"create": "60m", "update": "60m", "delete": "10m"}
    assert pull.parent.endswith("llmstack:index:OllamaServer::ollama")


def test_container_id_is_in_the_create_text_not_the_triggers():
    plan = run_program({"ollama": {"models": [{"name": "small", "model": "qwen2.5:0.5b"}]}})
    pull = plan.named("ollama-pull-qwen2.5-0.5b")
    # The mocks give the container the id `ollama-id`: a new container changes the create text (an update, a new pull).
    assert "exec ollama-id ollama pull qwen2.5:0.5b" in pull.inputs["create"]
    assert all("ollama-id" not in str(t) for t in pull.inputs["triggers"])
