"""GatewayKey: a LiteLLM virtual key for one client of the gateway, limited to the models it needs.

The key is generated here (a Pulumi secret) and registered with LiteLLM's `/key/generate`, which takes a
caller-chosen `key` (`sk-`, at least 16 characters) on 1.108.7. The call runs inside the gateway container
with its own master key env, so the master key is never in a command line, and the client key reaches it
on standard input, never in an argument or a log. Virtual keys live in LiteLLM's database.
"""

import json
import shlex
from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_command as command

from . import container
from .litellm import MASTER_KEY_PREFIX, PORT
from .litellm_config import MASTER_KEY_ENV
from .model_pull import INTERPRETER, docker_on_host

__all__ = ["GatewayKey", "GatewayKeyArgs"]

KEY_LENGTH = 48
REGISTER_TIMEOUT = "5m"
# Runs in the LiteLLM image's python3 (it has neither curl nor wget). argv: the gateway's URL, the request body
# without the key (JSON); stdin: the key. An existing key (a re-run, or a retained database) is updated to the
# new models instead of created again. The key is never printed, not even in LiteLLM's error messages.
REGISTER_SCRIPT = f"""
import hashlib, json, os, sys, urllib.error, urllib.request
url, body = sys.argv[1], json.loads(sys.argv[2])
key = sys.stdin.read().strip()
auth = {{"Authorization": "Bearer " + os.environ["{MASTER_KEY_ENV}"], "Content-Type": "application/json"}}
def call(method, path, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url + path, data=data, headers=auth, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
status, text = call("GET", "/key/info?key=" + hashlib.sha256(key.encode()).hexdigest())
known = status == 200 and (json.loads(text).get("info") or {{}}).get("status") != "deleted"
path = "/key/update" if known else "/key/generate"
if known:
    body.pop("key_type", None)
status, text = call("POST", path, {{**body, "key": key}})
if status != 200:
    sys.exit(f"{{path}} answered HTTP {{status}}: {{text.replace(key, '[secret]')[:2000]}}")
print(f"gateway key {{body['key_alias']!r}} ({{path}}): may call {{', '.join(body['models'])}}")
""".strip()
# Removes the key by its alias; a gateway without the key (or already gone) has nothing to remove.
DELETE_SCRIPT = f"""
import json, os, sys, urllib.error, urllib.request
auth = {{"Authorization": "Bearer " + os.environ["{MASTER_KEY_ENV}"], "Content-Type": "application/json"}}
body = json.dumps({{"key_aliases": [sys.argv[1]]}}).encode()
request = urllib.request.Request("http://localhost:{PORT}/key/delete", data=body, headers=auth, method="POST")
try:
    urllib.request.urlopen(request, timeout=60)
except urllib.error.HTTPError as error:
    if error.code not in (400, 404):
        sys.exit(f"/key/delete answered HTTP {{error.code}}: {{error.read().decode()[:2000]}}")
print(f"gateway key {{sys.argv[1]!r}} removed")
""".strip()


class GatewayKeyArgs(TypedDict):
    """Inputs of a GatewayKey."""

    docker_host: str
    """Docker host URL of the gateway container: `unix://...`, `tcp://host:port` or `ssh://user@host[:port]`."""
    container_id: pulumi.Input[str]
    """Id of the running gateway container (LiteLLMProxy's container): the key is registered once it is healthy,
    and removed from it when the key leaves the stack."""
    alias: str
    """The key's `key_alias` in LiteLLM (unique across its keys), e.g. `open-webui`."""
    models: list[str]
    """The model names the key may call (sorted)."""
    ssh_opts: NotRequired[list[str]]
    """ssh options of an ssh:// Docker host (the provider's ssh_opts)."""
    key: NotRequired[pulumi.Input[str]]
    """The key (secret, `sk-`...); generated and kept in state when absent."""


def register_body(alias: str, models: list[str]) -> dict[str, object]:
    """The /key/generate request without its `key`: the alias, the models it may call, LLM routes only."""
    return {"key_alias": alias, "models": sorted(models), "key_type": "llm_api", "metadata": {"managed_by": "llmstack"}}


def register_argv(args: GatewayKeyArgs, container_id: str) -> list[str]:
    """The local argv that registers the key (read from stdin) inside the gateway container."""
    body = json.dumps(register_body(args["alias"], args["models"]), sort_keys=True)
    exec_args = ["exec", "-i", container_id, "python3", "-c", REGISTER_SCRIPT, f"http://localhost:{PORT}", body]
    return docker_on_host(args["docker_host"], list(args.get("ssh_opts") or []), exec_args)


def delete_argv(args: GatewayKeyArgs, container_id: str) -> list[str]:
    exec_args = ["exec", container_id, "python3", "-c", DELETE_SCRIPT, args["alias"]]
    return docker_on_host(args["docker_host"], list(args.get("ssh_opts") or []), exec_args)


def delete_script(args: GatewayKeyArgs, container_id: str) -> str:
    """The delete command: a stopped or removed gateway container leaves nothing to do."""
    inspect = docker_on_host(
        args["docker_host"], list(args.get("ssh_opts") or []), ["container", "inspect", "--format", "{{.State.Running}}", container_id]
    )
    return (
        f"state=$({shlex.join(inspect)} 2>/dev/null) || exit 0\n"
        f'if [ "$state" != true ]; then exit 0; fi\n'
        f"exec {shlex.join(delete_argv(args, container_id))}\n"
    )


class GatewayKey(pulumi.ComponentResource):
    """A virtual key registered with a running LiteLLMProxy (which needs its database), limited to some models."""

    key: pulumi.Output[str]
    """The key (secret)."""

    def __init__(self, name: str, args: GatewayKeyArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:GatewayKey", name, {}, opts)
        given = args.get("key")
        key = (
            pulumi.Output.concat(MASTER_KEY_PREFIX, container.generated_secret(f"{name}-value", self, length=KEY_LENGTH))
            if given is None
            else pulumi.Output.from_input(given)
        )
        self.key = pulumi.Output.secret(key)
        container_id = pulumi.Output.from_input(args["container_id"])
        create = container_id.apply(lambda cid: shlex.join(register_argv(args, cid)))
        delete = container_id.apply(lambda cid: delete_script(args, cid))
        self.registration = command.local.Command(
            f"{name}-registration",
            create=create,
            delete=delete,
            stdin=self.key,
            interpreter=INTERPRETER,
            triggers=[args["docker_host"], args["alias"]],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=container.depends_on_of(opts),
                custom_timeouts=pulumi.CustomTimeouts(create=REGISTER_TIMEOUT, update=REGISTER_TIMEOUT, delete=REGISTER_TIMEOUT),
            ),
        )
        self.register_outputs({"key": self.key})
