"""OpenWebUI: the Open WebUI chat app wired to the gateway for chat, documents (embeddings, reranking) and voice."""

from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_docker as docker

from . import container

__all__ = ["OpenWebUI", "OpenWebUIArgs"]

# Facts about ghcr.io/open-webui/open-webui (docs/engine-facts.md). The contract test runs PyPI
# `open-webui` at the same version (tests/contract/requirements-webui.txt; a test keeps the two equal).
VERSION = "0.11.4"
IMAGE = f"ghcr.io/open-webui/open-webui:v{VERSION}"
PORT = 8080
DATA_PATH = "/app/backend/data"
# The image is python:3.11-slim with the server's own Python: /health answers {"status": true} without a login.
HEALTH_TEST = [
    "CMD",
    "python3",
    "-c",
    f"import urllib.request; urllib.request.urlopen('http://localhost:{PORT}/health', timeout=5)",
]
# The first start migrates its database (SQLite in the data volume).
HEALTH_START_PERIOD = "180s"
SECRET_KEY_ENV = "WEBUI_SECRET_KEY"
SECRET_KEY_LENGTH = 48
HOSTNAME = "open-webui"
# The settings Open WebUI keeps in its database after the first start win over envs unless persistence is
# off: off, the stack file stays in control. Ollama is reached only through the gateway; nothing phones home
# or downloads a model from a hub (every model is the gateway's).
BASE_ENVS = {
    "ENABLE_PERSISTENT_CONFIG": "False",
    "ENABLE_OLLAMA_API": "False",
    "ENABLE_OPENAI_API": "True",
    "OFFLINE_MODE": "True",
    "HF_HUB_OFFLINE": "1",
    "ENABLE_VERSION_UPDATE_CHECK": "False",
    "SCARF_NO_ANALYTICS": "true",
    "DO_NOT_TRACK": "true",
    "ANONYMIZED_TELEMETRY": "false",
}
# Without an embedding model Open WebUI would load a local sentence-transformers model: documents are then
# given whole to the chat model instead (no embeddings, no retrieval).
NO_EMBEDDING_ENVS = {"BYPASS_EMBEDDING_AND_RETRIEVAL": "True"}
# The envs holding the gateway key: one per feature that calls the gateway.
CHAT_KEY_ENV = "OPENAI_API_KEY"
EMBEDDING_KEY_ENV = "RAG_OPENAI_API_KEY"
RERANKING_KEY_ENV = "RAG_EXTERNAL_RERANKER_API_KEY"
TRANSCRIPTION_KEY_ENV = "AUDIO_STT_OPENAI_API_KEY"
SPEECH_KEY_ENV = "AUDIO_TTS_OPENAI_API_KEY"
DEFAULT_VOICE = "alloy"


class OpenWebUIArgs(TypedDict):
    """Inputs of an OpenWebUI."""

    network_name: pulumi.Input[str]
    """Docker network shared with the gateway."""
    gateway_url: pulumi.Input[str]
    """The gateway's OpenAI-compatible base URL on that network, e.g. `http://litellm:4000/v1` (by its network alias)."""
    api_key: pulumi.Input[str]
    """The gateway key Open WebUI calls with (secret): a virtual key limited to the models below, not the master key."""
    default_model: NotRequired[str]
    """The chat model a new chat starts with (DEFAULT_MODELS); absent: the user picks one."""
    embedding_model: NotRequired[str]
    """Embedding model for documents (RAG_EMBEDDING_MODEL); absent: documents are given whole to the chat model."""
    embedding_batch_size: NotRequired[int]
    """Texts per embedding request (RAG_EMBEDDING_BATCH_SIZE, default 1)."""
    reranking_model: NotRequired[str]
    """Reranker of retrieved passages through the gateway's /rerank (hybrid search); absent: no reranking."""
    transcription_model: NotRequired[str]
    """Speech-to-text model (AUDIO_STT_MODEL); absent: speech to text stays Open WebUI's own default."""
    speech_model: NotRequired[str]
    """Text-to-speech model (AUDIO_TTS_MODEL); absent: the browser speaks."""
    speech_voice: NotRequired[str]
    """Voice of the speech model (AUDIO_TTS_VOICE, default `alloy`)."""
    secret_key: NotRequired[pulumi.Input[str]]
    """Signs its sessions (secret); generated and kept in state when absent."""
    url: NotRequired[str]
    """The URL users open (WEBUI_URL), e.g. `https://chat.example.com` behind the edge."""
    bind_port: NotRequired[int]
    """Publish the UI on `<bind_address>:<port>` of the host (absent: not published; the edge reaches it by name)."""
    bind_address: NotRequired[str]
    """Host address of the published port (default 127.0.0.1: this host only)."""
    image: NotRequired[str]
    """Open WebUI image override."""
    hostname: NotRequired[str]
    """Its network alias (default `open-webui`): what the edge forwards to."""
    name_prefix: NotRequired[str]
    """Prefix of the container and volume names (e.g. the stack name: `prod-open-webui`); the alias stays."""


def plain_envs(args: OpenWebUIArgs, gateway_url: str) -> dict[str, str]:
    """Every env without a secret: the gateway, and each feature on its model or off."""
    base = gateway_url.rstrip("/")
    envs = {**BASE_ENVS, "OPENAI_API_BASE_URL": base}
    if args.get("url"):
        envs["WEBUI_URL"] = str(args["url"])
    if args.get("default_model"):
        envs["DEFAULT_MODELS"] = str(args["default_model"])
    if args.get("embedding_model"):
        envs.update(
            {
                "RAG_EMBEDDING_ENGINE": "openai",
                "RAG_OPENAI_API_BASE_URL": base,
                "RAG_EMBEDDING_MODEL": str(args["embedding_model"]),
                "RAG_EMBEDDING_BATCH_SIZE": str(int(args.get("embedding_batch_size") or 1)),
            }
        )
        if args.get("reranking_model"):
            # Reranking runs in hybrid search only; the external engine posts Cohere-style to the full URL.
            envs.update(
                {
                    "ENABLE_RAG_HYBRID_SEARCH": "True",
                    "RAG_RERANKING_ENGINE": "external",
                    "RAG_EXTERNAL_RERANKER_URL": f"{base}/rerank",
                    "RAG_RERANKING_MODEL": str(args["reranking_model"]),
                }
            )
    else:
        envs.update(NO_EMBEDDING_ENVS)
    if args.get("transcription_model"):
        envs.update(
            {
                "AUDIO_STT_ENGINE": "openai",
                "AUDIO_STT_OPENAI_API_BASE_URL": base,
                "AUDIO_STT_MODEL": str(args["transcription_model"]),
            }
        )
    if args.get("speech_model"):
        envs.update(
            {
                "AUDIO_TTS_ENGINE": "openai",
                "AUDIO_TTS_OPENAI_API_BASE_URL": base,
                "AUDIO_TTS_MODEL": str(args["speech_model"]),
                "AUDIO_TTS_VOICE": str(args.get("speech_voice") or DEFAULT_VOICE),
            }
        )
    return envs


def key_envs(args: OpenWebUIArgs) -> list[str]:
    """The envs that carry the gateway key: the chat connection's, and each gateway-backed feature's."""
    names = [CHAT_KEY_ENV]
    if args.get("embedding_model"):
        names.append(EMBEDDING_KEY_ENV)
        if args.get("reranking_model"):
            names.append(RERANKING_KEY_ENV)
    if args.get("transcription_model"):
        names.append(TRANSCRIPTION_KEY_ENV)
    if args.get("speech_model"):
        names.append(SPEECH_KEY_ENV)
    return names


def container_envs(args: OpenWebUIArgs, secrets: dict[str, pulumi.Input[str]]) -> list[pulumi.Input[str]]:
    """`NAME=value` envs sorted by name, as container.container_envs makes them, but the gateway URL may be an Output."""
    names = plain_envs(args, "")  # the names do not depend on the URL
    clash = set(names) & set(secrets)
    if clash:
        raise ValueError(f"env set twice: {sorted(clash)}")
    resolved = pulumi.Output.from_input(args["gateway_url"]).apply(lambda url: plain_envs(args, url))
    envs: list[pulumi.Input[str]] = []
    for name in sorted({*names, *secrets}):
        if name in secrets:
            envs.append(pulumi.Output.secret(pulumi.Output.concat(name, "=", secrets[name])))
        else:
            envs.append(pulumi.Output.concat(name, "=", resolved.apply(lambda envs, name=name: envs[name])))
    return envs


class OpenWebUI(pulumi.ComponentResource):
    """Open WebUI on the gateway's network, its settings from envs only, its data in a retained volume."""

    internal_url: pulumi.Output[str]
    """URL on the stack's network, e.g. `http://open-webui:8080` (what the edge forwards to)."""
    secret_key: pulumi.Output[str]
    """WEBUI_SECRET_KEY (secret)."""

    def __init__(self, name: str, args: OpenWebUIArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:OpenWebUI", name, {}, opts)
        hostname = args.get("hostname") or HOSTNAME
        prefix = args.get("name_prefix")
        given = args.get("secret_key")
        secret_key = (
            container.generated_secret(f"{name}-secret-key", self, length=SECRET_KEY_LENGTH)
            if given is None
            else pulumi.Output.secret(given)
        )
        api_key = pulumi.Output.secret(args["api_key"])
        secrets: dict[str, pulumi.Input[str]] = {SECRET_KEY_ENV: secret_key}
        secrets.update({env: api_key for env in key_envs(args)})
        data = container.retained_volume(f"{name}-data", container.docker_name(prefix, f"{hostname}-data"), "open-webui", self)
        bind_port = args.get("bind_port")
        ports = (
            []
            if bind_port is None
            else [docker.ContainerPortArgs(internal=PORT, external=int(bind_port), ip=args.get("bind_address") or "127.0.0.1")]
        )
        self.container = container.service_container(
            name,
            parent=self,
            container_name=container.docker_name(prefix, hostname),
            image=container.pinned_image(f"{name}-image", args.get("image") or IMAGE, self),
            network_name=args["network_name"],
            aliases=[hostname],
            command=[],
            envs=container_envs(args, secrets),
            health=container.healthcheck(HEALTH_TEST, HEALTH_START_PERIOD),
            component="open-webui",
            volumes=[docker.ContainerVolumeArgs(volume_name=data.name, container_path=DATA_PATH)],
            ports=ports,
            depends_on=container.depends_on_of(opts),
        )
        self.internal_url = pulumi.Output.from_input(f"http://{hostname}:{PORT}")
        self.secret_key = secret_key
        self.register_outputs({"internal_url": self.internal_url, "secret_key": self.secret_key})
