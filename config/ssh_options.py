"""A host's `sshOpts`: connection settings only. ssh runs on the machine that runs `pulumi preview`/`up` (previews run on pull requests), so no option may run a local command."""

import re
from collections.abc import Iterable
from typing import Optional

from .errors import ConfigIssue, key_path

# ssh_config(5) keywords that only say how to connect and authenticate (matched case-insensitively, as ssh does).
CONNECTION_SETTINGS = {
    name.lower(): name
    for name in (
        "AddressFamily", "BatchMode", "BindAddress", "CASignatureAlgorithms", "CertificateFile", "CheckHostIP",
        "Ciphers", "Compression", "ConnectionAttempts", "ConnectTimeout", "ControlMaster", "ControlPath",
        "ControlPersist", "GlobalKnownHostsFile", "HashKnownHosts", "HostbasedAcceptedAlgorithms",
        "HostKeyAlgorithms", "HostKeyAlias", "IdentitiesOnly", "IdentityAgent", "IdentityFile", "IPQoS",
        "KbdInteractiveAuthentication", "KexAlgorithms", "LogLevel", "MACs", "NumberOfPasswordPrompts",
        "PasswordAuthentication", "Port", "PreferredAuthentications", "ProxyJump", "PubkeyAcceptedAlgorithms",
        "PubkeyAcceptedKeyTypes", "PubkeyAuthentication", "RekeyLimit", "RequiredRSASize", "ServerAliveCountMax",
        "ServerAliveInterval", "StrictHostKeyChecking", "TCPKeepAlive", "UpdateHostKeys", "User",
        "UserKnownHostsFile", "VerifyHostKeyDNS",
    )
}
# Options refused with the reason, for the ones people reach for.
RUNS_A_COMMAND = {
    "proxycommand": "runs a local command to connect",
    "localcommand": "runs a local command after connecting",
    "permitlocalcommand": "enables LocalCommand, which runs a local command",
    "knownhostscommand": "runs a local command to list known hosts",
    "match": "can run a local command (Match exec)",
    "include": "reads another ssh config file, which may run local commands",
    "remotecommand": "replaces the command the Docker provider runs on the host",
    "pkcs11provider": "loads a local shared library into ssh",
    "securitykeyprovider": "loads a local shared library into ssh",
    "localforward": "opens a port forwarding",
    "remoteforward": "opens a port forwarding",
    "dynamicforward": "opens a SOCKS proxy",
    "forwardagent": "lets the Docker host use your ssh keys",
    "forwardx11": "forwards your X display to the Docker host",
}
# Flags with a value and the ssh_config keyword each stands for.
FLAG_SETTINGS = {"-p": "Port", "-i": "IdentityFile", "-J": "ProxyJump", "-l": "User"}
FLAGS_WITHOUT_VALUE = ("-4", "-6", "-C", "-q")
# Refused flags that take a value: the value is skipped with them.
_REFUSED_WITH_VALUE = ("-F", "-L", "-R", "-D", "-W", "-I", "-E", "-S")
REFUSED_FLAGS = {
    "-F": "reads another ssh config file, which may run local commands",
    "-L": "opens a port forwarding",
    "-R": "opens a port forwarding",
    "-D": "opens a SOCKS proxy",
    "-W": "forwards stdio elsewhere",
    "-A": "lets the Docker host use your ssh keys",
    "-X": "forwards your X display",
    "-Y": "forwards your X display",
    "-I": "loads a PKCS#11 library",
    "-E": "writes a log file",
    "-S": "uses another control socket",
    "-M": "makes this a control master",
    "-N": "runs no command",
    "-f": "goes to the background",
    "-G": "prints the config instead of connecting",
    "-s": "requests a subsystem",
    "-t": "allocates a terminal",
    "-T": "disables the terminal",
    "-v": "prints debug output into the deploy log",
}
_NUMBER_SETTINGS = ("port", "connecttimeout", "connectionattempts", "serveraliveinterval", "serveralivecountmax", "numberofpasswordprompts")
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]"
_JUMP = re.compile(rf"^(ssh://)?([A-Za-z0-9_][A-Za-z0-9_.-]*@)?({_HOST})(:[0-9]{{1,5}})?$")
FIX = (
    "keep connection settings only: -o Key=Value with ProxyJump, Port, User, IdentityFile, UserKnownHostsFile, "
    "StrictHostKeyChecking, ServerAliveInterval, ConnectTimeout, ... (or -p, -i, -J, -l)"
)


def _value_problem(keyword: str, value: str) -> Optional[str]:
    key = keyword.lower()
    if not value:
        return f"{keyword} has no value"
    if value.startswith("-"):
        return f"the value of {keyword} starts with '-' and would be read as another option"
    if key in _NUMBER_SETTINGS and not (value.isdigit() and 0 < int(value) <= (65535 if key == "port" else 100000)):
        return f"{keyword} takes a positive number" + (" up to 65535" if key == "port" else "")
    if key == "proxyjump" and value != "none":
        for hop in value.split(","):
            if ":" in hop.split("@")[0] and "@" in hop:
                return "ProxyJump holds a password (user:password@host)"
            if not _JUMP.match(hop):
                return f"ProxyJump hop {hop!r} is not [user@]host[:port]"
    return None


def _setting(text: str) -> tuple[str, str]:
    """`Key=Value` or `Key Value` (as ssh reads an -o argument) as (Key, Value)."""
    text = text.strip()
    match = re.match(r"^([A-Za-z0-9]+)\s*(?:=\s*|\s+)(.*)$", text, re.DOTALL)
    if not match:
        return text, ""
    return match[1], match[2].strip().strip('"')


def option_problems(options: list[str]) -> Iterable[str]:
    """Why each refused option in an sshOpts list is refused, in order."""
    i = 0
    while i < len(options):
        arg = options[i]
        flag, attached = arg[:2], arg[2:]
        if flag == "-o" or flag in FLAG_SETTINGS:
            if attached:
                value = attached
            elif i + 1 < len(options):
                i += 1
                value = options[i]
            else:
                yield f"{flag} needs a value"
                break
            keyword, setting_value = _setting(value) if flag == "-o" else (FLAG_SETTINGS[flag], value.strip())
            key = keyword.lower()
            if key in RUNS_A_COMMAND:
                yield f"{CONNECTION_SETTINGS.get(key, keyword)} {RUNS_A_COMMAND[key]} on the machine that runs pulumi"
            elif key not in CONNECTION_SETTINGS:
                yield f"{keyword} is not a connection setting llmstack accepts"
            else:
                problem = _value_problem(CONNECTION_SETTINGS[key], setting_value)
                if problem:
                    yield problem
        elif arg in FLAGS_WITHOUT_VALUE:
            pass
        elif flag in REFUSED_FLAGS:
            yield f"{flag} {REFUSED_FLAGS[flag]}"
            if flag in _REFUSED_WITH_VALUE and not attached:
                i += 1
        else:
            yield f"{arg[:40]!r} is not an ssh option llmstack accepts"
        i += 1


def ssh_option_issues(stack) -> Iterable[ConfigIssue]:
    """Every sshOpts entry that is not a plain connection setting."""
    for name, host in sorted(stack.hosts.items()):
        if not host.docker.startswith("ssh://"):
            continue  # validation already says sshOpts apply to ssh:// hosts only
        for problem in option_problems(list(host.ssh_opts)):
            yield ConfigIssue(key_path(("hosts", name, "sshOpts")), problem, FIX)
