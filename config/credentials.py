"""Credentials written in plaintext where the stack file takes free-form text: refused, with how to pass them as Pulumi secrets."""

import re
from collections.abc import Iterable
from typing import Any, Optional
from urllib.parse import urlsplit

from components import vllm_cli

from .errors import ConfigIssue, key_path

# Token shapes of the services a stack talks to; a match anywhere in a value is a credential.
TOKEN_PATTERNS = (
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{20,}")),
    ("an API key (sk-...)", re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")),
    ("a GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("an AWS access key", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a password in a URL", re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:[^/\s@]+@")),
)
# A key or flag whose name says its value is secret.
# `bos_token` or `pad_token` (model config) are not secrets: a token name needs a qualifier or to stand alone.
SECRET_NAME = re.compile(
    r"^token$|(^|[-_.])((hf|hub|auth|access|api|bearer|refresh|github|gh)[-_]?token"
    r"|secret|password|passwd|passphrase|credentials?|api[-_]?key|access[-_]?key|private[-_]?key|secret[-_]?key)$",
    re.IGNORECASE,
)
SECRET_VLLM_FLAGS = {
    "--hf-token": "pulumi config set --secret llmstack:hfToken <token> (vLLM gets it as HF_TOKEN)",
    "--api-key": "leave it out: vLLM's key is generated, kept in the stack's state as a secret and given to the gateway",
}
HOW_TO_SET = (
    "remove it: a stack file value is plaintext in the state and in every preview. Credentials go in as Pulumi secrets: "
    "`pulumi config set --secret llmstack:hfToken <token>` (Hugging Face), `pulumi config set --secret llmstack:masterKey <key>` (the gateway)"
)
REDACTED = "[redacted]"


def credential_kind(text: str) -> Optional[str]:
    """What credential `text` holds (`a Hugging Face token`), or None."""
    for kind, pattern in TOKEN_PATTERNS:
        if pattern.search(text):
            return kind
    return None


def redact(text: str) -> str:
    """`text` with every credential-shaped part replaced, so no report or log prints one."""
    for _, pattern in TOKEN_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def _strings(value: Any, loc: tuple) -> Iterable[tuple[tuple, str]]:
    """Every string (keys included) under a plain value, with its location."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*loc, key), str(key)
            yield from _strings(item, (*loc, key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _strings(item, (*loc, i))


def _named_secrets(value: Any, loc: tuple) -> Iterable[tuple]:
    """Locations of non-empty values whose key names a secret (`token`, `api_key`, ...)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if SECRET_NAME.search(str(key)) and item not in (None, "", False):
                yield (*loc, key)
            else:
                yield from _named_secrets(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _named_secrets(item, (*loc, i))


def named_secret_issues(value: Any, loc: tuple) -> Iterable[ConfigIssue]:
    """Values under keys that name a secret (`token`, `api_key`, ...) in a free-form mapping (engine env, model
    overrides); one that also looks like a credential is reported by the stack-wide check already."""
    for where in _named_secrets(value, loc):
        item = value
        for part in where[len(loc):]:
            item = item[part]
        if not (isinstance(item, str) and credential_kind(item)):
            yield ConfigIssue(key_path(where), "names a secret and holds it in plaintext", HOW_TO_SET)


def secret_flag_issues(extra_args: list[str], loc: tuple) -> Iterable[ConfigIssue]:
    """vLLM flags in extraArgs whose value is a credential (it would sit in plaintext in the container's command)."""
    for arg in extra_args:
        name = vllm_cli.flag_name(arg)
        if name in SECRET_VLLM_FLAGS or (name and name.startswith("--") and SECRET_NAME.search(name)):
            yield ConfigIssue(
                key_path(loc),
                f"{name} would put a credential in plaintext in the container's command",
                SECRET_VLLM_FLAGS.get(name, HOW_TO_SET),
            )


def _docker_url_issues(stack: Any) -> Iterable[ConfigIssue]:
    for name, host in sorted(stack.hosts.items()):
        try:
            password = urlsplit(host.docker).password
        except ValueError:
            continue  # an unreadable URL is reported by the host address checks
        if password is not None:
            yield ConfigIssue(
                key_path(("hosts", name, "docker")),
                "the Docker URL holds a password, which would be stored in plaintext in the provider's inputs",
                "write ssh://user@host and authenticate with a key (ssh-agent or IdentityFile in sshOpts); for tcp:// use TLS certificates (DOCKER_CERT_PATH)",
            )


def credential_issues(stack: Any) -> Iterable[ConfigIssue]:
    """Every credential written in plaintext in the validated stack (the secret keys themselves excepted)."""
    document = stack.model_dump(by_alias=True, exclude={"master_key", "hf_token"})
    found: dict[tuple, str] = {}
    for loc, text in _strings(document, ()):
        if loc[:1] == ("hosts",) and loc[-1] == "docker":
            continue  # a Docker URL's password has its own message below
        kind = credential_kind(text)
        if kind:
            found.setdefault(loc, f"holds {kind} in plaintext")
    for loc, problem in sorted(found.items(), key=lambda item: str(item[0])):
        yield ConfigIssue(key_path(loc), problem, HOW_TO_SET)
    yield from _docker_url_issues(stack)
