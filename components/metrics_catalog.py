"""The metric names each scraped engine exports at its pinned version, kept with the image facts.

Dashboards and alert rules may name only series listed here (the tests parse every query)."""

from collections.abc import Iterable, Mapping
from typing import Literal

MetricKind = Literal["counter", "gauge", "histogram", "summary"]

# Engines scraped for their own /metrics, and engines that only get a blackbox probe (no /metrics).
GATEWAY = "litellm"
VLLM = "vllm"
INFINITY = "infinity"
OLLAMA = "ollama"
SPEACHES = "speaches"
GPU_EXPORTER = "dcgm"
SCRAPED_ENGINES = (GATEWAY, VLLM, INFINITY, GPU_EXPORTER)
PROBED_ENGINES = (OLLAMA, SPEACHES)
ENGINES = SCRAPED_ENGINES + PROBED_ENGINES

# LiteLLM 1.108.7 with `litellm_settings.callbacks: ["prometheus"]`. Names and kinds read from the
# installed package, litellm/integrations/prometheus.py (the `_counter_factory`/`_gauge_factory`/
# `_histogram_factory` calls), and seen on the real proxy's metrics listener in
# tests/test_litellm_metrics.py. prometheus_client adds `_total` to counters.
LITELLM_METRICS: Mapping[str, MetricKind] = {
    "litellm_proxy_total_requests_metric": "counter",  # labels: requested_model, status_code, route, model_id, ...
    "litellm_proxy_failed_requests_metric": "counter",  # labels: requested_model, exception_status, exception_class, ...
    "litellm_request_total_latency_metric": "histogram",  # labels: model_group, requested_model, model_id, ...
    "litellm_llm_api_latency_metric": "histogram",  # labels: model_group, model, model_id, api_provider, ...
    "litellm_llm_api_time_to_first_token_metric": "histogram",  # streamed calls only; labels: model_group, model, ...
    "litellm_input_tokens_metric": "counter",  # labels: model, requested_model, model_id, ...
    "litellm_output_tokens_metric": "counter",
    "litellm_total_tokens_metric": "counter",
    "litellm_deployment_state": "gauge",  # 0 healthy, 1 partial outage, 2 outage; labels: litellm_model_name, model_id, api_base, api_provider
    "litellm_deployment_cooled_down": "counter",
    "litellm_deployment_success_responses": "counter",
    "litellm_deployment_failure_responses": "counter",
    "litellm_deployment_total_requests": "counter",
    "litellm_deployment_latency_per_output_token": "histogram",
    "litellm_requests_metric": "counter",
    "litellm_overhead_latency_metric": "histogram",
}

# vLLM 0.31.0, vllm/v1/metrics/loggers.py (PrometheusStatLogger): names and kinds read from the 0.31.0
# wheel's source (tests/test_monitoring_config.py checks them again wherever vLLM is installed).
# `vllm:gpu_cache_usage_perc` is gone (renamed `vllm:kv_cache_usage_perc` in 0.9, absent in 0.31.0).
# Labels: model_name (the served model name), engine (the engine core index).
VLLM_METRICS: Mapping[str, MetricKind] = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",  # 1 = 100 %
    "vllm:prefix_cache_queries": "counter",
    "vllm:prefix_cache_hits": "counter",
    "vllm:num_preemptions": "counter",
    "vllm:prompt_tokens": "counter",
    "vllm:generation_tokens": "counter",
    "vllm:request_success": "counter",  # label finished_reason
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_queue_time_seconds": "histogram",
}

# Infinity 0.0.77: infinity_emb/infinity_server.py calls `Instrumentator().instrument(app)` and exposes
# it at /metrics (outside the url prefix and the key), so the series are prometheus-fastapi-
# instrumentator's defaults: labels handler (the route, e.g. /embeddings), method, status (2xx, 4xx...).
INFINITY_METRICS: Mapping[str, MetricKind] = {
    "http_requests": "counter",
    "http_request_duration_seconds": "histogram",
    "http_request_duration_highr_seconds": "histogram",
    "http_request_size_bytes": "summary",
    "http_response_size_bytes": "summary",
}

# NVIDIA dcgm-exporter 4.5.3-4.8.2, its default counters file (etc/default-counters.csv, read from a copy in
# the search tool's code corpus; no GPU here to run the exporter): gauges with
# labels gpu (index), UUID, device, modelName, Hostname. Framebuffer sizes in MiB, power in W.
DCGM_METRICS: Mapping[str, MetricKind] = {
    "DCGM_FI_DEV_FB_USED": "gauge",
    "DCGM_FI_DEV_FB_FREE": "gauge",
    "DCGM_FI_DEV_GPU_UTIL": "gauge",
    "DCGM_FI_DEV_GPU_TEMP": "gauge",
    "DCGM_FI_DEV_POWER_USAGE": "gauge",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "gauge",
}

# Written by Prometheus itself for every target (`up`, scrape_*) and by blackbox_exporter's http
# prober for each probe (prometheus.io docs; blackbox_exporter prober/http.go).
PROMETHEUS_METRICS: Mapping[str, MetricKind] = {
    "up": "gauge",
    "scrape_duration_seconds": "gauge",
    "scrape_samples_scraped": "gauge",
}
PROBE_METRICS: Mapping[str, MetricKind] = {
    "probe_success": "gauge",
    "probe_duration_seconds": "gauge",
    "probe_http_status_code": "gauge",
}

CATALOGUE: Mapping[str, Mapping[str, MetricKind]] = {
    GATEWAY: LITELLM_METRICS,
    VLLM: VLLM_METRICS,
    INFINITY: INFINITY_METRICS,
    GPU_EXPORTER: DCGM_METRICS,
    "prometheus": PROMETHEUS_METRICS,
    "probe": PROBE_METRICS,
}

# The series a metric of each kind shows on /metrics (prometheus_client and Go client conventions).
_SERIES_SUFFIXES: Mapping[MetricKind, tuple[str, ...]] = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
# Go exporters name DCGM gauges and `up` as they are; a Python counter already named `..._total`
# (none here) would keep its name.


def series_names(metrics: Mapping[str, MetricKind]) -> frozenset[str]:
    """Every series name these metrics put on /metrics."""
    return frozenset(name + suffix for name, kind in metrics.items() for suffix in _SERIES_SUFFIXES[kind])


def known_series(sources: Iterable[str] = tuple(CATALOGUE)) -> frozenset[str]:
    """Every series name that the given sources (default: all) export."""
    names: set[str] = set()
    for source in sources:
        names |= series_names(CATALOGUE[source])
    return frozenset(names)
