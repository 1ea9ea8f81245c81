"""Validates one stack's raw `llmstack` config into a StackConfig, collecting every mistake with its key and fix."""

import difflib
import ipaddress
import re
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Optional

from pydantic import BaseModel, ValidationError

from . import gpu_plan, monitoring, placement, registry, relay, webui
from .errors import ConfigIssue, StackConfigError, key_path
from .gpu_plan import GpuPlan
from .registry import model_locations
from .schema import DURATION_PATTERN, FIX, NAME_PATTERN, NAME_PREFIX_PATTERN, StackConfig, resolve_host
from .secrets import SECRET_KEYS, SecretValue
from . import safety

_GENERIC_FIXES = {
    "missing": "add this key",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "finite_number": "write a finite number (not .inf or .nan)",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write a string (quote it in YAML)",
    "list_type": "write a list",
    "dict_type": "write a mapping of keys to values",
    "model_type": "write a mapping of keys to values",
    "model_attributes_type": "write a mapping of keys to values",
    "too_short": "add at least one entry",
    "string_too_short": "write a non-empty value",
    "string_pattern_mismatch": "use letters, digits, '.', '_' or '-', starting with a letter or digit (it becomes a Docker name)",
    "greater_than": "raise the value",
    "greater_than_equal": "raise the value",
    "less_than": "lower the value",
    "less_than_equal": "lower the value",
}
# What a value that does not match one of the schema's patterns is, and how to write it instead.
_PATTERN_PROBLEMS = {
    NAME_PATTERN: ("is not a valid name", _GENERIC_FIXES["string_pattern_mismatch"]),
    DURATION_PATTERN: ("is not a duration", "write a duration such as 90s, 15m or 1h30m"),
    NAME_PREFIX_PATTERN: (
        "is not a Docker name prefix",
        "use up to 31 letters, digits, '.', '_' or '-', starting with a letter or digit (or \"\" for no prefix)",
    ),
}


def _field_type(model: type[BaseModel], key: str) -> Optional[Any]:
    for name, info in model.model_fields.items():
        if key in (info.alias, name):
            return info.annotation
    return None


def _unwrap(annotation: Any) -> Any:
    """The model or container type under Optional/Annotated."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = members[0] if len(members) == 1 else annotation
            if len(members) != 1:
                return annotation
        else:
            return annotation


def known_keys(loc: tuple) -> list[str]:
    """The keys the schema accepts at the mapping that holds `loc[-1]`."""
    current: Any = registry.stack_model()
    for part in loc[:-1]:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            current = _field_type(current, str(part))
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return []
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _issue_from_error(error: dict) -> ConfigIssue:
    loc = tuple(error["loc"])
    if loc[-1:] == ("[key]",):
        loc = loc[:-1]  # pydantic's marker for "the key itself": the path already ends with it
    path = key_path(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        options = known_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), options, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`? " if close else ""
        allowed = f"known keys here: {', '.join(options)}" if options else "remove it"
        return ConfigIssue(path, "unknown key", f"{hint}{allowed}")
    message = str(error["msg"]).removeprefix("Value error, ")
    if FIX in message:
        message, fix = message.split(FIX, 1)
        return ConfigIssue(path, message, fix)
    if kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") in _PATTERN_PROBLEMS:
        what, fix = _PATTERN_PROBLEMS[error["ctx"]["pattern"]]
        return ConfigIssue(path, f"{error.get('input')!r} {what}", fix)
    if kind == "literal_error":
        return ConfigIssue(path, message, f"use {error.get('ctx', {}).get('expected', 'one of the listed values')}")
    return ConfigIssue(path, message, _GENERIC_FIXES.get(kind, "see the stack config contract in the README"))


def _secret_issues(raw: dict[str, Any]) -> list[ConfigIssue]:
    issues = []
    for key in SECRET_KEYS:
        if key in raw and raw[key] is not None and not isinstance(raw[key], SecretValue):
            issues.append(
                ConfigIssue(
                    key_path((key,)),
                    "a secret is written in plaintext",
                    f"remove it from the file and run `pulumi config set --secret llmstack:{key} <value>`",
                )
            )

    def walk(value: Any, loc: tuple) -> None:
        options = known_keys(loc) if loc and isinstance(loc[-1], str) else []
        if options and loc[-1] not in options:
            return  # an unknown (often misspelt) key: the schema reports it with the key it resembles
        if isinstance(value, SecretValue):
            issues.append(
                ConfigIssue(key_path(loc), "holds an encrypted value but is not a secret", "set it without --secret")
            )
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*loc, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*loc, i))

    for key, value in raw.items():
        if key not in SECRET_KEYS:
            walk(value, (key,))
    return issues


def _secret_value_issues(stack: StackConfig) -> Iterable[ConfigIssue]:
    key = stack.master_key.plaintext if stack.master_key else None
    if key is not None and (not key.startswith("sk-") or len(key) < 35 or key == "sk-1234"):
        yield ConfigIssue(
            key_path(("masterKey",)),
            "LiteLLM refuses this master key",
            "use `sk-` followed by at least 32 random characters, e.g. "
            "pulumi config set --secret llmstack:masterKey \"sk-$(openssl rand -hex 24)\"",
        )


def _name_issues(stack: StackConfig) -> Iterable[ConfigIssue]:
    seen: dict[str, tuple] = {}
    for name, loc in model_locations(stack):
        if name in seen:
            yield ConfigIssue(
                key_path(loc), f"model name {name!r} is already used at {key_path(seen[name])}", "give every model a unique name"
            )
        else:
            seen[name] = loc
    # An engine's name may also name the gateway env holding its key (VLLM_<NAME>_API_KEY): names that
    # differ only in case or punctuation would share that env, and the gateway could not be given both keys.
    envs: dict[str, tuple[str, tuple]] = {}
    for placed in placement.placements(stack):
        spec, loc, block = placed.spec, placed.loc, placed.block
        env = block.gateway_key_env()
        if env is None:
            continue
        name, where = block.hostname(), ((*loc, "name") if spec.many and not block.replica else loc)
        other = envs.setdefault(env, (name, where))
        if other[0] != name:  # the same name twice is reported as a duplicate above
            yield ConfigIssue(
                key_path(where),
                f"{name!r} and {other[0]!r} ({key_path(other[1])}) differ only in case or punctuation; "
                f"both would use the gateway key env {env}",
                f"give the {spec.key} entries names that differ in letters or digits",
            )


def _host_issues(stack: StackConfig) -> Iterable[ConfigIssue]:
    for name, host in sorted(stack.hosts.items()):
        if host.ssh_opts and not host.docker.startswith("ssh://"):
            yield ConfigIssue(key_path(("hosts", name, "sshOpts")), "sshOpts apply to ssh:// hosts only", "remove sshOpts or use an ssh:// URL")
    placements: list[tuple[tuple, Optional[str]]] = [(("gateway", "host"), stack.gateway.host)]
    placements += placement.host_locations(stack)
    names = sorted(stack.hosts)
    for loc, host in placements:
        if host is not None and host not in stack.hosts:
            close = difflib.get_close_matches(host, names, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            yield ConfigIssue(key_path(loc), f"unknown host {host!r}", f"{hint}use one of the hosts under llmstack:hosts: {', '.join(names)}")
        elif host is None and len(names) > 1:
            yield ConfigIssue(key_path(loc), "several hosts are configured, so the host must be named", f"add `host:` with one of: {', '.join(names)}")


def _gateway_issues(stack: StackConfig) -> Iterable[ConfigIssue]:
    names = [n for n, _ in model_locations(stack)]
    if not names:
        keys = registry.section_keys()
        yield ConfigIssue(
            key_path((keys[-1],)), "the stack serves no model", f"configure at least one of {', '.join(keys[:-1])} or {keys[-1]}"
        )

    def unknown(name: str, loc: tuple) -> Iterable[ConfigIssue]:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            yield ConfigIssue(key_path(loc), f"unknown model {name!r}", f"{hint}name a model of this stack")

    for model, targets in stack.gateway.fallbacks.items():
        yield from unknown(model, ("gateway", "fallbacks", model))
        for i, target in enumerate(targets):
            yield from unknown(target, ("gateway", "fallbacks", model, i))
            if target == model:
                yield ConfigIssue(key_path(("gateway", "fallbacks", model, i)), "a model falls back to itself", "name another model")
        if not targets:
            yield ConfigIssue(key_path(("gateway", "fallbacks", model)), "the fallback list is empty", "list at least one model or remove the entry")
    for model, limit in stack.gateway.rate_limits.items():
        yield from unknown(model, ("gateway", "rateLimits", model))
        if limit.rpm is None and limit.tpm is None:
            yield ConfigIssue(key_path(("gateway", "rateLimits", model)), "the rate limit sets neither rpm nor tpm", "set rpm, tpm or both")


_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _edge_issues(stack: StackConfig) -> Iterable[ConfigIssue]:
    edge = stack.edge
    if stack.gateway.replicas > 1 and edge is None:
        yield ConfigIssue(
            key_path(("gateway", "replicas")),
            "several gateway replicas need the edge, which balances requests over them",
            "add llmstack:edge (tls: internal, acme or off), or set replicas: 1",
        )
    if edge is None:
        return
    domain = edge.domain
    is_ip = False
    if domain is not None:
        try:
            ipaddress.ip_address(domain)
            is_ip = True
        except ValueError:
            if not _HOST_NAME.match(domain):
                yield ConfigIssue(key_path(("edge", "domain")), f"{domain!r} is not a host name or an IP address", "write the name clients use, such as llm.example.com")
    if edge.tls == "acme":
        if domain is None or is_ip:
            yield ConfigIssue(key_path(("edge", "domain")), "tls: acme needs a DNS name that points at the gateway's host", "set domain: llm.example.com (or use tls: internal)")
        if not edge.email or "@" not in edge.email or any(c.isspace() or c in '{}"`' for c in edge.email):
            yield ConfigIssue(key_path(("edge", "email")), "tls: acme needs the email of the ACME account", "set email: ops@example.com")
    elif edge.email is not None:
        yield ConfigIssue(key_path(("edge", "email")), f"email is used by tls: acme only, not tls: {edge.tls}", "remove it, or set tls: acme")
    if edge.tls == "acme" and edge.https_port == edge.http_port:
        yield ConfigIssue(key_path(("edge", "httpPort")), "httpPort and httpsPort are the same port", "give them different ports")


def _section_issues(stack: StackConfig) -> Iterable[ConfigIssue]:
    """Each engine section's own checks of its blocks."""
    for spec, loc, block in registry.blocks(stack):
        for check in spec.checks:
            yield from check(block, loc, stack)


ENGINES = "<engine sections>"
"""Stands for every registered engine section in the keys a check reads."""


def read_keys(reads: Iterable[str]) -> set[str]:
    """Top-level keys, with ENGINES expanded to the registered engine sections."""
    return {key for read in reads for key in (registry.section_keys() if read == ENGINES else (read,))}


@dataclass(frozen=True)
class Check:
    """A check across keys of a valid stack, and the top-level keys it reads (skipped while one of them is invalid)."""

    run: Callable[[StackConfig], Iterable[ConfigIssue]]
    reads: tuple[str, ...]


CHECKS = (
    Check(_secret_value_issues, ("masterKey",)),
    Check(_name_issues, (ENGINES,)),
    Check(_host_issues, ("hosts", "gateway", ENGINES)),
    Check(placement.replica_issues, ("hosts", "gateway", ENGINES)),
    Check(relay.relay_issues, ("hosts", "gateway", "monitoring", ENGINES)),
    Check(_gateway_issues, ("gateway", ENGINES)),
    Check(_section_issues, (ENGINES,)),
    Check(_edge_issues, ("gateway", "edge")),
    # Values that would run a command, leak a credential or collide on a Docker engine (config/safety.py).
    *(Check(run, tuple(ENGINES if read == safety.ENGINES else read for read in reads)) for run, reads in safety.CHECKS),
    Check(monitoring.monitoring_issues, ("monitoring", "hosts", "gateway", ENGINES)),
    Check(webui.webui_issues, ("webui", "gateway", ENGINES)),
)
# The GPU plan reads where each engine runs and what it takes.
GPU_PLAN_READS = ("hosts", ENGINES)


@dataclass(frozen=True)
class CheckedStack:
    """A valid stack config and what validation computed from it."""

    config: StackConfig
    gpu_plan: GpuPlan


def check_stack(raw: dict[str, Any]) -> CheckedStack:
    """The validated stack config with its GPU plan, or StackConfigError listing every mistake (nothing is deployed either way).

    Each top-level key is validated on its own, so one broken section does not hide the mistakes of
    the others; the checks across sections then run over the sections that passed. Pure: it reads
    the raw config and registers nothing."""
    model = registry.stack_model()
    issues = _secret_issues(raw)
    failed = {i.path.split(":", 1)[1].split(".")[0].split("[")[0] for i in issues}
    valid: dict[str, Any] = {}
    for key, value in raw.items():
        if key in failed:
            continue
        try:
            model.model_validate({key: value})
            valid[key] = value
        except ValidationError as error:
            issues += [_issue_from_error(e) for e in error.errors()]
            failed.add(key)
    stack = model.model_validate(valid).with_file_order(raw)
    for check in CHECKS:
        if not failed & read_keys(check.reads):
            issues += list(check.run(stack))
    plan = None
    if not failed & read_keys(GPU_PLAN_READS):
        plan = gpu_plan.plan(stack)
        issues += plan.issues
    if issues or plan is None:
        raise StackConfigError(issues)
    return CheckedStack(stack, plan)


def validate(raw: dict[str, Any]) -> StackConfig:
    """The validated stack config (see check_stack), for callers that need only the config."""
    return check_stack(raw).config
