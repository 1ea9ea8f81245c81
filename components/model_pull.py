"""Fetches one model into a running service container during `pulumi up` (and removes it when dropped), on the container's own Docker host."""

import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from typing import NotRequired, TypedDict
from urllib.parse import urlparse

import pulumi
import pulumi_command as command
import pulumi_docker as docker

__all__ = ["ModelPullArgs"]

# The scripts are POSIX sh, whatever shell the machine running `pulumi up` prefers.
INTERPRETER = ["/bin/sh", "-c"]
PULL_TIMEOUT = "60m"
REMOVE_TIMEOUT = "10m"
# A failed command's error shows the end of its output: the server's own message is there, progress bars are not.
FAILURE_TAIL_LINES = 40
SUCCESS_TAIL_LINES = 3


class ModelPullArgs(TypedDict):
    """Inputs of one model pull: where the container runs, which container, and the argv that fetch and remove the model."""

    docker_host: str
    """Docker host URL of the container: `unix://...`, `tcp://host:port` or `ssh://user@host[:port]`."""
    ssh_opts: NotRequired[list[str]]
    """Options for `ssh` on an ssh:// host (the stack's sshOpts), used as the Docker provider uses them."""
    container_name: str
    """Docker name of the service container (for messages and the resource's identity)."""
    container_id: pulumi.Input[str]
    """Id of the container the model is pulled into and removed from: a new container (a changed spec) pulls again.
    Never the name, which another stack on the same Docker engine could own."""
    model: str
    """The model as the server names it (an Ollama tag, a Hugging Face repo id)."""
    pull: list[str]
    """Argv run in the container to fetch the model; a non-zero exit fails `pulumi up` with the server's message."""
    remove: list[str]
    """Argv run in the container to remove the model; it must exit 0 when the model is already absent."""


def docker_on_host(docker_host: str, ssh_opts: Sequence[str], docker_args: Sequence[str]) -> list[str]:
    """The local argv that runs `docker <docker_args>` against the container's Docker host."""
    url = urlparse(docker_host)
    if url.scheme == "ssh":
        # Not `docker -H ssh://`: it reads only ~/.ssh/config, so the stack's sshOpts (keys, proxies,
        # host-key policy) would not apply. ssh with those options reaches the host as the provider does.
        if not url.hostname:
            raise ValueError(f"{docker_host!r} names no host")
        target = f"{url.username}@{url.hostname}" if url.username else url.hostname
        port = ["-p", str(url.port)] if url.port else []
        # The remote shell parses the command again: pass it as one quoted string.
        return ["ssh", *ssh_opts, *port, "--", target, shlex.join(["docker", *docker_args])]
    return ["docker", "-H", docker_host, *docker_args]


def _run_and_report(argv: Sequence[str]) -> str:
    """Sh lines that run argv, show the end of its output, and on failure exit with its status and output."""
    return (
        f"out=$({shlex.join(argv)} 2>&1) || {{ rc=$?; printf '%s\\n' \"$out\" | tail -n {FAILURE_TAIL_LINES} >&2; exit $rc; }}\n"
        f"printf '%s\\n' \"$out\" | tail -n {SUCCESS_TAIL_LINES}\n"
    )


def pull_script(args: ModelPullArgs, container_id: str) -> str:
    """The create/update command: runs the pull argv in exactly the container this resource depends on."""
    ssh_opts = list(args.get("ssh_opts") or [])
    return _run_and_report(docker_on_host(args["docker_host"], ssh_opts, ["exec", container_id, *args["pull"]]))


def remove_script(args: ModelPullArgs, container_id: str) -> str:
    """The delete command: removes the model from the running container; a container that is gone or stopped has nothing to remove from."""
    ssh_opts = list(args.get("ssh_opts") or [])
    name, model = args["container_name"], args["model"]
    inspect = docker_on_host(args["docker_host"], ssh_opts, ["container", "inspect", "--format", "{{.State.Running}}", container_id])
    gone = shlex.quote(f"{name} is gone: nothing to remove {model} from")
    stopped = shlex.quote(f"{name} is not running: {model} stays in its model store")
    return (
        f"state=$({shlex.join(inspect)} 2>&1) || {{\n"
        f"  case \"$state\" in *'No such'*|*'no such'*) echo {gone}; exit 0;; esac\n"
        f"  printf '%s\\n' \"$state\" >&2; exit 1; }}\n"
        f"if [ \"$state\" != true ]; then echo {stopped}; exit 0; fi\n"
        + _run_and_report(docker_on_host(args["docker_host"], ssh_opts, ["exec", container_id, *args["remove"]]))
    )


def pull_resource_names(component_name: str, models: Iterable[str]) -> dict[str, str]:
    """Model -> the name of its pull resource, `<component>-pull-<model>` made safe, one per distinct model."""
    names: dict[str, str] = {}
    for model in sorted(set(models)):
        name = f"{component_name}-pull-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", model).strip("-")
        clash = [m for m, n in names.items() if n == name]
        if clash:
            raise ValueError(f"models {clash[0]!r} and {model!r} map to the same resource name {name!r}")
        names[model] = name
    return names


def pull_command(
    resource_name: str,
    args: ModelPullArgs,
    *,
    parent: pulumi.Resource,
    container: pulumi.Resource,
    model_store: pulumi.Resource,
) -> command.local.Command:
    """A Command that pulls the model once the container is healthy, again into a new container, and removes it when dropped."""
    # Triggers (replace) are what identifies the model on its server. The container id is in the create
    # text instead, so a new container re-runs the pull as an in-place update: as a trigger, the container's
    # delete-before-replace (it has a fixed name) would first delete this resource, removing the model from
    # the retained store only to download it all again (and fail on an offline host).
    container_id = pulumi.Output.from_input(args["container_id"])
    return command.local.Command(
        resource_name,
        create=container_id.apply(lambda resolved: pull_script(args, resolved)),
        # An update (a new container) stores the new delete too: a dropped model is removed from the container it is in.
        delete=container_id.apply(lambda resolved: remove_script(args, resolved)),
        interpreter=INTERPRETER,
        triggers=[args["docker_host"], args["container_name"], args["model"]],
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[container],
            # On destroy (or when the whole engine leaves the stack) the model stays in the retained store.
            deleted_with=model_store,
            custom_timeouts=pulumi.CustomTimeouts(create=PULL_TIMEOUT, update=PULL_TIMEOUT, delete=REMOVE_TIMEOUT),
        ),
    )


def pull_models(
    component_name: str,
    models: Iterable[str],
    *,
    docker_host: str,
    ssh_opts: Sequence[str],
    container: docker.Container,
    container_name: str,
    model_store: pulumi.Resource,
    pull_argv: Callable[[str], list[str]],
    remove_argv: Callable[[str], list[str]],
    parent: pulumi.Resource,
) -> list[command.local.Command]:
    """One pull resource per distinct model of a server (Ollama tags, Speaches ids), in sorted order."""
    pulls = []
    for model, resource_name in pull_resource_names(component_name, models).items():
        args: ModelPullArgs = {
            "docker_host": docker_host,
            "ssh_opts": list(ssh_opts),
            "container_name": container_name,
            "container_id": container.id,
            "model": model,
            "pull": pull_argv(model),
            "remove": remove_argv(model),
        }
        pulls.append(pull_command(resource_name, args, parent=parent, container=container, model_store=model_store))
    return pulls
