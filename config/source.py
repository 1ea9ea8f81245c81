"""Reads a stack's raw `llmstack` config, from a Pulumi.<stack>.yaml file or from the running Pulumi program."""

import json
from pathlib import Path
from typing import Any, Optional

from . import stack_yaml
from .errors import NAMESPACE, ConfigIssue, StackConfigError
from .registry import structured_keys
from .secrets import SECRET_KEYS, SecretValue


def _own_key(key: str, project: str) -> Optional[str]:
    """The key inside our namespace, or None for another namespace (docker:, pulumi:, ...)."""
    if ":" not in key:
        return key
    namespace, _, name = key.partition(":")
    return name if namespace in (NAMESPACE, project) else None


def _secure(value: Any) -> Any:
    """Replaces `{secure: ...}` leaves with opaque SecretValues."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return SecretValue()
        return {k: _secure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_secure(v) for v in value]
    return value


def from_stack_file(path: Path) -> dict[str, Any]:
    """The raw `llmstack` keys of a Pulumi.<stack>.yaml file, read as the Pulumi CLI reads it; encrypted values stay opaque."""
    try:
        with path.open("rb") as file:
            data = file.read(stack_yaml.MAX_BYTES + 1)
    except OSError as error:
        raise StackConfigError([ConfigIssue(str(path), f"cannot read the file ({error.strerror})", "pass the path of a Pulumi.<stack>.yaml file")]) from None
    try:
        document = stack_yaml.load(data, config_key=lambda key: _own_key(str(key), NAMESPACE) or key) or {}
    except stack_yaml.StackYamlError as error:
        raise StackConfigError([ConfigIssue(str(path), error.problem, error.fix)]) from None
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise StackConfigError([ConfigIssue(str(path), "has no `config:` mapping", "put the llmstack:* keys under a top-level `config:`")])
    raw: dict[str, Any] = {}
    for key, value in (document.get("config") or {}).items():
        own = _own_key(str(key), NAMESPACE)
        if own is not None:
            raw[own] = _secure(value)
    return raw


def from_pulumi_config(config: dict[str, str], secret_keys: set[str], project: str) -> dict[str, Any]:
    """The raw `llmstack` keys of the running program's config (values decrypted, secrets wrapped)."""
    raw: dict[str, Any] = {}
    for key, text in config.items():
        own = _own_key(key, project)
        if own is None:
            continue
        if key in secret_keys:
            # A secret under a non-secret key is reported by validation; keep it opaque.
            raw[own] = SecretValue(text if own in SECRET_KEYS else None)
        elif own in structured_keys():
            try:
                raw[own] = json.loads(text)
            except (TypeError, ValueError):
                raw[own] = text
        else:
            raw[own] = text
    return raw


def running_program_config() -> dict[str, Any]:
    """The raw `llmstack` config of the Pulumi program that is running now."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    values = dict(runtime_config.get_config_env())
    values.update(runtime_config.CONFIG.get())
    secret_keys = {key for key in values if runtime_config.is_config_secret(key)}
    return from_pulumi_config(values, secret_keys, pulumi.get_project())
