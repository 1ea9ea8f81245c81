"""SpeachesServer: one Speaches server for speech-to-text and text-to-speech, each model downloaded during `pulumi up`."""

from collections.abc import Sequence
from typing import NotRequired, Optional, TypedDict

import pulumi

from . import container
from .engine import EngineDescription, EngineServer
from .model_entry import ROUTE_MODES, LiteLLMModelEntry, engine_entries, key_env_name, require_unique_names

__all__ = ["SpeachesModel", "SpeachesServer", "SpeachesServerArgs"]

# Facts about the ghcr.io/speaches-ai/speaches image (docs/engine-facts.md); upgrading the image is one edit here.
CUDA_IMAGE = "ghcr.io/speaches-ai/speaches:0.8.3-cuda"
CPU_IMAGE = "ghcr.io/speaches-ai/speaches:0.8.3-cpu"
PORT = 8000
CONTAINER_NAME = "speaches"
# The image runs as `ubuntu` (uid 1000) and its Dockerfile creates this directory as that user
# (`USER ubuntu` ... `RUN mkdir -p $HOME/.cache/huggingface/hub`), so an empty named volume mounted
# here starts with Docker's copy of it: owned by uid 1000, writable by the server.
HF_HUB_PATH = "/home/ubuntu/.cache/huggingface/hub"
# Speaches reads its key from this env; the healthcheck and the pull scripts read it back inside the container.
CONTAINER_KEY_ENV = "API_KEY"
# On 0.8.3 /health too needs the bearer token once API_KEY is set. The shell reads $API_KEY from the
# container's env at check time, so the key never appears in the container spec.
HEALTH_TEST = ["CMD-SHELL", f'curl -fsS -o /dev/null -H "Authorization: Bearer $API_KEY" http://localhost:{PORT}/health']
# Nothing is downloaded at start (models are fetched afterwards through the API); importing the runtimes takes a while.
HEALTH_START_PERIOD = "5m"
LITELLM_PREFIX = "openai/"
MODES = (ROUTE_MODES["transcription"], ROUTE_MODES["speech"])


def api_script(method: str, ok: Sequence[int], absent: Sequence[int] = ()) -> str:
    """A sh script calling `<method> /v1/models/$1` with the container's own $API_KEY; exit 0 on `ok` or `absent` codes, else the answer as the error."""
    ok_codes, absent_codes = "|".join(map(str, ok)), "|".join(map(str, absent))
    absent_case = f'{absent_codes}) echo "$1 was not on the server"; exit 0;; ' if absent else ""
    # Double quotes only: the script is quoted again for `docker exec` and for ssh.
    return (
        f'resp=$(curl -sS -X {method} -w "\\n%{{http_code}}" -H "Authorization: Bearer $API_KEY" '
        f'"http://localhost:{PORT}/v1/models/$1") || exit 1; '
        'code=$(printf "%s\\n" "$resp" | tail -n 1); body=$(printf "%s\\n" "$resp" | sed "\\$d"); '
        f'case "$code" in {ok_codes}) printf "%s\\n" "$body"; exit 0;; {absent_case}esac; '
        f'printf "{method} /v1/models/%s answered HTTP %s: %s\\n" "$1" "$code" "$body" >&2; exit 1'
    )


# POST downloads: 200 downloaded, 201 already there, 404 unknown model. DELETE: 200 removed, 404 not there.
PULL_SCRIPT = api_script("POST", ok=(200, 201))
REMOVE_SCRIPT = api_script("DELETE", ok=(200,), absent=(404,))


class SpeachesModel(TypedDict):
    """One model served by Speaches."""

    name: str
    """The model name clients use (unique across the stack)."""
    model: str
    """Speaches model id, e.g. `Systran/faster-whisper-small` or `speaches-ai/piper-fr_FR-siwis-medium`."""
    mode: str
    """LiteLLM mode: `audio_transcription` (/audio/transcriptions) or `audio_speech` (/audio/speech)."""


class SpeachesServerArgs(TypedDict):
    """Inputs of a SpeachesServer."""

    network_name: pulumi.Input[str]
    """Docker network the gateway shares with this server."""
    docker_host: str
    """URL of the Docker host the container runs on (the provider's host): the downloads are requested there."""
    models: list[SpeachesModel]
    """The models to download and serve."""
    ssh_opts: NotRequired[list[str]]
    """ssh options of an ssh:// Docker host (the provider's ssh_opts)."""
    gpus: NotRequired[list[str]]
    """GPU device ids or `["all"]`; absent or empty: CPU only (the `-cpu` image)."""
    image: NotRequired[str]
    """Image override (default: the pinned CUDA or CPU tag, by `gpus`)."""
    hf_token: NotRequired[pulumi.Input[str]]
    """Hugging Face token for gated models (secret)."""
    api_key: NotRequired[pulumi.Input[str]]
    """Key Speaches requires (secret); generated and kept in state when absent."""
    container_name: NotRequired[str]
    """Network alias (the host in `api_base`), and the container name after `name_prefix` (default `speaches`)."""
    name_prefix: NotRequired[str]
    """Prefix of the container and volume names (e.g. the stack name: `prod-speaches`); the network alias stays unprefixed."""
    cache_volume_name: NotRequired[str]
    """Docker volume for the Hugging Face hub cache (default `<container_name>-hf-hub`); it is retained on destroy."""
    health_start_period: NotRequired[str]
    """Grace period before failed healthchecks count, e.g. `5m`."""


def image_for(gpus: Optional[Sequence[str]]) -> str:
    """The pinned image of the variant: CUDA with GPUs, CPU without."""
    return CUDA_IMAGE if gpus else CPU_IMAGE


def inference_device(gpus: Optional[Sequence[str]]) -> str:
    """WHISPER__INFERENCE_DEVICE matching the image variant."""
    return "cuda" if gpus else "cpu"


def pull_argv(model_id: str) -> list[str]:
    """What downloads a model: its API, called from inside the container with the container's key."""
    return ["sh", "-c", PULL_SCRIPT, "sh", model_id]


def remove_argv(model_id: str) -> list[str]:
    """What removes a model; one the server does not have is not an error."""
    return ["sh", "-c", REMOVE_SCRIPT, "sh", model_id]


def gateway_key_env(hostname: str) -> str:
    """The gateway env var holding the key of the server with this network alias: `SPEACHES_API_KEY` for the default one."""
    return key_env_name("speaches", "" if hostname == CONTAINER_NAME else hostname)


def model_entries(models: Sequence[SpeachesModel], api_base: str, key_env: str) -> list[LiteLLMModelEntry]:
    """The LiteLLM entries, sorted by name."""
    return engine_entries(models, prefix=LITELLM_PREFIX, api_base=api_base, key_env=key_env, modes=MODES)  # type: ignore[arg-type]


class SpeachesServer(EngineServer):
    """A Speaches server with its models downloaded before `pulumi up` returns."""

    pulled_models: pulumi.Output[list[str]]
    """The model ids downloaded into the server, sorted."""

    def __init__(self, name: str, args: SpeachesServerArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:SpeachesServer", name, {}, opts)
        models = list(args["models"])
        require_unique_names("SpeachesServer", models)  # type: ignore[arg-type]
        hostname = args.get("container_name") or CONTAINER_NAME
        container_name = container.docker_name(args.get("name_prefix"), hostname)
        gpus = list(args.get("gpus") or [])
        description = EngineDescription(
            component="speaches",
            container_name=container_name,
            hostname=hostname,
            image=args.get("image") or image_for(gpus),
            # The image's own CMD (uvicorn serving the app) is what runs.
            command=[],
            health_test=HEALTH_TEST,
            health_start_period=args.get("health_start_period") or HEALTH_START_PERIOD,
            data_path=HF_HUB_PATH,
            data_volume=args.get("cache_volume_name") or f"{container_name}-hf-hub",
            data_resource="hf-hub",
            plain_envs={"ENABLE_UI": "false", "WHISPER__INFERENCE_DEVICE": inference_device(gpus)},
            key_env=CONTAINER_KEY_ENV,
            api_key=args.get("api_key"),
            hf_token=args.get("hf_token"),
            gpus=gpus,
        )
        self._build(name, description, args["network_name"], opts)
        model_ids = sorted({m["model"] for m in models})
        self._pull_models(name, model_ids, args["docker_host"], args.get("ssh_opts") or [], pull_argv, remove_argv)
        key_env = gateway_key_env(hostname)
        api_base = f"http://{hostname}:{PORT}/v1"
        self._expose(
            api_base, model_entries(models, api_base, key_env), key_env, pulled_models=pulumi.Output.from_input(model_ids)
        )
