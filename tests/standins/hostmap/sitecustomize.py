"""Fallback name mapping for a child Python process: resolve names listed in LLMSTACK_HOSTS.

Loaded as `sitecustomize` because gateway.py puts this folder first on PYTHONPATH; used only
where a private /etc/hosts (unshare) is not available."""

import json
import os
import socket

_HOSTS = {k.lower(): v for k, v in json.loads(os.environ.get("LLMSTACK_HOSTS") or "{}").items()}
_getaddrinfo = socket.getaddrinfo
_gethostbyname = socket.gethostbyname


def _getaddrinfo_mapped(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if isinstance(host, bytes):
        host = host.decode()
    return _getaddrinfo(_HOSTS.get(str(host).lower(), host) if host else host, *args, **kwargs)


def _gethostbyname_mapped(host):  # type: ignore[no-untyped-def]
    return _gethostbyname(_HOSTS.get(str(host).lower(), host))


if _HOSTS:
    socket.getaddrinfo = _getaddrinfo_mapped
    socket.gethostbyname = _gethostbyname_mapped
    # uvloop resolves names in libuv, past the socket module, and LiteLLM asks uvicorn for it
    # by name: stand in a module whose loop is asyncio's.
    import asyncio
    import sys
    import types

    _uvloop = types.ModuleType("uvloop")
    _uvloop.new_event_loop = asyncio.new_event_loop  # type: ignore[attr-defined]
    _uvloop.EventLoopPolicy = asyncio.DefaultEventLoopPolicy  # type: ignore[attr-defined]
    sys.modules["uvloop"] = _uvloop
