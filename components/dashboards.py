"""Grafana provisioning generated from the stack's models and GPU plan: datasource, dashboard provider, dashboards.

A model added to the stack gets its row of panels on the next `pulumi up`; nobody edits dashboard JSON."""

import json
from collections.abc import Sequence
from typing import NotRequired, TypedDict

import yaml

from .metrics_catalog import INFINITY, PROBED_ENGINES, VLLM

__all__ = ["DashboardModel", "GpuReservation"]

DATASOURCE_UID = "llmstack-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
FOLDER = "llmstack"
# Provisioning files (read by Grafana at start) and the dashboards they point at, in the Grafana image.
PROVISIONING_DIR = "/etc/grafana/provisioning"
DASHBOARDS_DIR = "/etc/grafana/dashboards/llmstack"
# Grafana's dashboard JSON model: classic (v1) dashboards, which Grafana 13 still provisions from files.
SCHEMA_VERSION = 39
RATE = "$__rate_interval"
MIB_PER_GIB = 1024


class DashboardModel(TypedDict):
    """A model the stack serves, as the dashboards need it."""

    name: str
    """The model name clients use."""
    engine: str
    """`vllm`, `ollama`, `infinity` or `speaches`."""
    server: NotRequired[str]
    """The `model` label of the scrape target that serves it, when one server serves several models
    (Infinity, Ollama, Speaches: e.g. `infinity`); default: the model name (one vLLM container per model)."""


class GpuReservation(TypedDict):
    """One GPU of the GPU plan."""

    host: str
    """The stack's host name."""
    gpu: str
    """Device id (dcgm-exporter's `gpu` label: the index)."""
    memory_gib: NotRequired[float]
    """The card's memory, from the host's inventory (absent on a host without inventory: no line drawn)."""
    reserved_gib: NotRequired[float]
    """What the GPU plan reserves on it: the sum of its rows' `reserved_gib` (each service's share plus
    its CUDA context); absent when the plan could not tell (no inventory): no line drawn."""
    services: NotRequired[list[str]]
    """Names of the services reserving it, for the panel title."""


def _target(expr: str, legend: str, ref: str) -> dict:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def _panel(title: str, targets: Sequence[tuple[str, str]], unit: str, x: int, y: int, w: int = 8, h: int = 8) -> dict:
    return {
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "targets": [_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)],
        "title": title,
        "type": "timeseries",
    }


def _row(title: str, y: int) -> dict:
    return {"collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": [], "title": title, "type": "row"}


def _quantiles(bucket: str, selector: str, by: str, legend: str) -> list[tuple[str, str]]:
    return [
        (f"histogram_quantile({q}, sum by (le{by}) (rate({bucket}{{{selector}}}[{RATE}])))", f"{legend}p{int(q * 100)}")
        for q in (0.5, 0.95)
    ]


def _dashboard(uid: str, title: str, panels: list[dict]) -> dict:
    # Panel ids in order, so the JSON is the same on every run.
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return {
        "editable": False,
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["llmstack"],
        "templating": {"list": []},
        "time": {"from": "now-6h", "to": "now"},
        "title": title,
        "uid": uid,
    }


def gateway_dashboard() -> dict:
    """Every model through the gateway: requests, failures, latency, time to first token, tokens/s, deployments, targets."""
    by_model = "requested_model"
    panels = [
        _panel("Requests/s by model", [(f"sum by ({by_model}) (rate(litellm_proxy_total_requests_metric_total[{RATE}]))", "{{requested_model}}")], "reqps", 0, 0),
        _panel("Failed requests/s by model", [(f"sum by ({by_model}) (rate(litellm_proxy_failed_requests_metric_total[{RATE}]))", "{{requested_model}}")], "reqps", 8, 0),
        _panel(
            "Failure ratio by model",
            [(f"sum by ({by_model}) (rate(litellm_proxy_failed_requests_metric_total[{RATE}])) / sum by ({by_model}) (rate(litellm_proxy_total_requests_metric_total[{RATE}]))", "{{requested_model}}")],
            "percentunit", 16, 0,
        ),
        _panel("Latency p50/p95 by model", _quantiles("litellm_request_total_latency_metric_bucket", "", ", model_group", "{{model_group}} "), "s", 0, 8),
        _panel("Time to first token p50/p95 (streamed)", _quantiles("litellm_llm_api_time_to_first_token_metric_bucket", "", ", model_group", "{{model_group}} "), "s", 8, 8),
        _panel("Output tokens/s by model", [(f"sum by ({by_model}) (rate(litellm_output_tokens_metric_total[{RATE}]))", "{{requested_model}}")], "short", 16, 8),
        _panel("Deployment state (0 healthy, 1 partial, 2 outage)", [("max by (litellm_model_name, api_base) (litellm_deployment_state)", "{{litellm_model_name}} {{api_base}}")], "short", 0, 16, w=12),
        _panel(
            "Targets up (1) / down (0)",
            [("min by (engine, model, host, replica) (up)", "{{engine}} {{model}} {{host}}/{{replica}}"),
             ("min by (engine, model, host, replica) (probe_success)", "probe {{engine}} {{model}} {{host}}/{{replica}}")],
            "short", 12, 16, w=12,
        ),
    ]
    return _dashboard("llmstack-gateway", "llmstack: gateway overview", panels)


def _engine_panels(model: DashboardModel, y: int) -> list[dict]:
    name, engine = model["name"], model["engine"]
    sel = f'model="{model.get("server") or name}"'
    if engine == VLLM:
        return [
            _panel(f"{name}: time to first token", _quantiles("vllm:time_to_first_token_seconds_bucket", sel, "", ""), "s", 0, y),
            _panel(f"{name}: generated tokens/s", [(f"sum by (replica) (rate(vllm:generation_tokens_total{{{sel}}}[{RATE}]))", "replica {{replica}}")], "short", 8, y),
            _panel(
                f"{name}: queue",
                [(f"sum by (replica) (vllm:num_requests_waiting{{{sel}}})", "waiting {{replica}}"),
                 (f"sum by (replica) (vllm:num_requests_running{{{sel}}})", "running {{replica}}")],
                "short", 16, y,
            ),
            _panel(f"{name}: KV cache used", [(f"max by (replica) (vllm:kv_cache_usage_perc{{{sel}}})", "replica {{replica}}")], "percentunit", 0, y + 8),
            _panel(f"{name}: inter-token latency", _quantiles("vllm:inter_token_latency_seconds_bucket", sel, "", ""), "s", 8, y + 8),
            _panel(f"{name}: engine latency (end to end)", _quantiles("vllm:e2e_request_latency_seconds_bucket", sel, "", ""), "s", 16, y + 8),
        ]
    if engine == INFINITY:
        return [
            _panel(f"{name}: Infinity server requests/s by route", [(f"sum by (handler, status) (rate(http_requests_total{{{sel}}}[{RATE}]))", "{{handler}} {{status}}")], "reqps", 0, y),
            _panel(f"{name}: Infinity server latency", _quantiles("http_request_duration_seconds_bucket", sel, "", ""), "s", 8, y),
        ]
    if engine in PROBED_ENGINES:
        return [
            _panel(f"{name}: {engine} health probe", [(f"min by (replica) (probe_success{{{sel}}})", "replica {{replica}}")], "short", 0, y),
            _panel(f"{name}: {engine} probe time", [(f"max by (replica) (probe_duration_seconds{{{sel}}})", "replica {{replica}}")], "s", 8, y),
        ]
    raise ValueError(f"dashboard model {name!r}: unknown engine {engine!r}; one of vllm, ollama, infinity, speaches")


def models_dashboard(models: Sequence[DashboardModel]) -> dict:
    """One row per model, sorted by name: the gateway's view of it, then its engine's own metrics."""
    names = [m["name"] for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"dashboard models: a name appears twice in {sorted(names)}")
    panels: list[dict] = []
    y = 0
    for model in sorted(models, key=lambda m: m["name"]):
        name = model["name"]
        panels.append(_row(f"{name} ({model['engine']})", y))
        y += 1
        panels += [
            _panel(
                f"{name}: requests/s and failures/s",
                [(f'sum(rate(litellm_proxy_total_requests_metric_total{{requested_model="{name}"}}[{RATE}]))', "requests"),
                 (f'sum(rate(litellm_proxy_failed_requests_metric_total{{requested_model="{name}"}}[{RATE}]))', "failures")],
                "reqps", 0, y,
            ),
            _panel(f"{name}: gateway latency", _quantiles("litellm_request_total_latency_metric_bucket", f'model_group="{name}"', "", ""), "s", 8, y),
            _panel(f"{name}: output tokens/s (gateway)", [(f'sum(rate(litellm_output_tokens_metric_total{{requested_model="{name}"}}[{RATE}]))', "tokens/s")], "short", 16, y),
        ]
        y += 8
        engine_panels = _engine_panels(model, y)
        panels += engine_panels
        y = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in engine_panels)
    return _dashboard("llmstack-models", "llmstack: models", panels)


def gpus_dashboard(gpus: Sequence[GpuReservation]) -> dict:
    """Per GPU: memory used against the GPU plan's reservation and the card, utilisation, temperature, power."""
    panels: list[dict] = []
    y = 0
    for gpu in sorted(gpus, key=lambda g: (g["host"], g["gpu"])):
        host, index = gpu["host"], gpu["gpu"]
        sel = f'host="{host}", gpu="{index}"'
        lines = [(f"max(DCGM_FI_DEV_FB_USED{{{sel}}})", "used")]
        if gpu.get("reserved_gib") is not None:
            lines.append((f"vector({round(float(gpu['reserved_gib']) * MIB_PER_GIB)})", "reserved by the GPU plan"))
        if gpu.get("memory_gib") is not None:
            lines.append((f"vector({round(float(gpu['memory_gib']) * MIB_PER_GIB)})", "card"))
        services = ", ".join(sorted(gpu.get("services") or []))
        panels.append(_row(f"{host} GPU {index}" + (f" ({services})" if services else ""), y))
        y += 1
        panels += [
            _panel(f"{host} GPU {index}: memory used vs reserved", lines, "decmbytes", 0, y, w=6),
            _panel(f"{host} GPU {index}: utilisation", [(f"max(DCGM_FI_DEV_GPU_UTIL{{{sel}}})", "utilisation %")], "percent", 6, y, w=6),
            _panel(f"{host} GPU {index}: temperature", [(f"max(DCGM_FI_DEV_GPU_TEMP{{{sel}}})", "°C")], "celsius", 12, y, w=6),
            _panel(f"{host} GPU {index}: power", [(f"max(DCGM_FI_DEV_POWER_USAGE{{{sel}}})", "W")], "watt", 18, y, w=6),
        ]
        y += 8
    return _dashboard("llmstack-gpus", "llmstack: GPUs", panels)


def dashboards(models: Sequence[DashboardModel], gpus: Sequence[GpuReservation]) -> dict[str, dict]:
    """File name -> dashboard, for every dashboard the stack gets (no GPU dashboard without GPUs)."""
    boards = {"gateway.json": gateway_dashboard(), "models.json": models_dashboard(models)}
    if gpus:
        boards["gpus.json"] = gpus_dashboard(gpus)
    return boards


def render_dashboard(dashboard: dict) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_datasource(prometheus_url: str) -> str:
    """datasources/llmstack.yaml: the stack's Prometheus, the default and not editable in the UI."""
    return yaml.safe_dump(
        {
            "apiVersion": 1,
            "datasources": [
                {
                    "access": "proxy",
                    "editable": False,
                    "isDefault": True,
                    "name": "Prometheus",
                    "type": "prometheus",
                    "uid": DATASOURCE_UID,
                    "url": prometheus_url,
                }
            ],
        },
        sort_keys=True,
    )


def render_dashboard_provider(path: str = DASHBOARDS_DIR) -> str:
    """dashboards/llmstack.yaml: load every JSON file under `path` into the llmstack folder, read-only."""
    return yaml.safe_dump(
        {
            "apiVersion": 1,
            "providers": [
                {
                    "allowUiUpdates": False,
                    "disableDeletion": True,
                    "folder": FOLDER,
                    "name": "llmstack",
                    "options": {"path": path},
                    "type": "file",
                }
            ],
        },
        sort_keys=True,
    )


def provisioning_files(prometheus_url: str, models: Sequence[DashboardModel], gpus: Sequence[GpuReservation]) -> dict[str, str]:
    """Container path -> content of every file Grafana needs, sorted by path."""
    files = {
        f"{PROVISIONING_DIR}/datasources/llmstack.yaml": render_datasource(prometheus_url),
        f"{PROVISIONING_DIR}/dashboards/llmstack.yaml": render_dashboard_provider(),
    }
    for name, board in dashboards(models, gpus).items():
        files[f"{DASHBOARDS_DIR}/{name}"] = render_dashboard(board)
    return dict(sorted(files.items()))
