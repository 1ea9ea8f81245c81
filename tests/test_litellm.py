"""LiteLLMProxy under Pulumi's mocks: Postgres, Redis, the uploaded config, keys, ports and start order."""

import pytest
import yaml

from components import litellm, postgres, redis
from components.litellm_config import render_litellm_config
from config.plan import Plan, is_secret, reveal, run_program
from tests.conftest import container, envs_of

VLLM = [{"name": "qwen3", "model": "Qwen/Qwen3-30B-A3B-FP8", "gpus": ["0"]}, {"name": "small", "model": "Qwen/Qwen3-0.6B", "gpus": ["1"]}]
GATEWAY = {
    "port": 4400,
    "bind": "0.0.0.0",
    "routingStrategy": "least-busy",
    "numRetries": 2,
    "requestTimeout": 3600,
    "fallbacks": {"qwen3": ["small"]},
    "rateLimits": {"qwen3": {"rpm": 600, "tpm": 1000000}},
    "allowedFails": 5,
    "cooldownTime": 60,
    "dropParams": False,
    "numWorkers": 4,
}


@pytest.fixture(scope="module")
def plan() -> Plan:
    return run_program({"vllm": VLLM, "gateway": GATEWAY})


def config_of(plan: Plan) -> dict:
    uploads = reveal(container(plan, "gateway").inputs["uploads"])
    assert [u["file"] for u in uploads] == ["/app/config.yaml"]
    return yaml.safe_load(uploads[0]["content"])


def secret_envs_of(plan: Plan, name: str) -> dict[str, str]:
    envs = container(plan, name).inputs["envs"]
    assert is_secret(envs), f"{name} envs must be a secret"
    return envs_of(container(plan, name))


def test_postgres(plan):
    db = container(plan, "gateway-postgres")
    assert plan.named("gateway-postgres-image").inputs["name"] == postgres.IMAGE
    assert db.inputs["healthcheck"]["tests"] == ["CMD", "pg_isready", "-U", "litellm", "-d", "litellm", "-h", "127.0.0.1"]
    assert db.inputs["volumes"] == [{"volumeName": "dev-litellm-postgres-data", "containerPath": "/var/lib/postgresql/data"}]
    assert plan.named("gateway-postgres-data").retain_on_delete
    envs = secret_envs_of(plan, "gateway-postgres")
    assert envs["POSTGRES_USER"] == "litellm" and envs["POSTGRES_DB"] == "litellm" and len(envs["POSTGRES_PASSWORD"]) >= 32
    assert "ports" not in db.inputs and db.inputs["restart"] == "unless-stopped" and db.inputs["wait"] is True


def test_redis_requires_password_and_persists(plan):
    cache = container(plan, "gateway-redis")
    assert plan.named("gateway-redis-image").inputs["name"] == redis.IMAGE
    assert cache.inputs["command"] == ["sh", "-c", 'exec redis-server --requirepass "$REDIS_PASSWORD" --appendonly yes --dir /data']
    assert cache.inputs["healthcheck"]["tests"][0] == "CMD-SHELL"
    assert 'redis-cli -a "$REDIS_PASSWORD"' in cache.inputs["healthcheck"]["tests"][1]
    assert cache.inputs["volumes"] == [{"volumeName": "dev-litellm-redis-data", "containerPath": "/data"}]
    assert plan.named("gateway-redis-data").retain_on_delete
    assert "ports" not in cache.inputs
    assert len(secret_envs_of(plan, "gateway-redis")["REDIS_PASSWORD"]) >= 32


def test_gateway_starts_after_healthy_postgres_and_redis(plan):
    gw = container(plan, "gateway")
    assert container(plan, "gateway-postgres").urn in gw.depends_on
    assert container(plan, "gateway-redis").urn in gw.depends_on
    assert container(plan, "gateway-postgres").inputs["wait"] is True


def test_gateway_publishes_only_its_port(plan):
    assert container(plan, "gateway").inputs["ports"] == [{"internal": 4000, "external": 4400, "ip": "0.0.0.0"}]
    published = [r.name for r in plan.of_type("docker:index/container:Container") if r.inputs.get("ports")]
    assert published == ["gateway"]


def test_gateway_container_spec(plan):
    gw = container(plan, "gateway").inputs
    assert gw["name"] == "dev-litellm"
    assert gw["command"] == ["--config", "/app/config.yaml", "--port", "4000", "--num_workers", "4"]
    assert gw["healthcheck"]["tests"][:2] == ["CMD", "python3"] and "/health/liveliness" in gw["healthcheck"]["tests"][3]
    assert "curl" not in str(gw["healthcheck"]) and "wget" not in str(gw["healthcheck"])
    assert plan.named("gateway-image").inputs["name"] == litellm.IMAGE


def test_config_entries_and_settings(plan):
    config = config_of(plan)
    by_name = {m["model_name"]: m for m in config["model_list"]}
    assert sorted(by_name) == ["qwen3", "small"]
    assert by_name["qwen3"]["litellm_params"] == {
        "model": "hosted_vllm/qwen3",
        "api_base": "http://qwen3:8000/v1",
        "api_key": "os.environ/VLLM_QWEN3_API_KEY",
        "rpm": 600,
        "tpm": 1000000,
    }
    assert "rpm" not in by_name["small"]["litellm_params"]
    assert config["litellm_settings"] == {
        "num_retries": 2,
        "request_timeout": 3600,
        "drop_params": False,
        "fallbacks": [{"qwen3": ["small"]}],
    }
    assert config["router_settings"] == {
        "routing_strategy": "least-busy",
        "redis_host": "litellm-redis",
        "redis_port": 6379,
        "redis_password": "os.environ/REDIS_PASSWORD",
        # LiteLLM 1.108.7 reads these two from router_settings only (components/gateway_failover.py).
        "allowed_fails": 5,
        "cooldown_time": 60,
        "enable_weighted_failover": True,
    }
    # One deployment per model name: no health checks (nothing to route around, no probe costs).
    assert config["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY", "database_url": "os.environ/DATABASE_URL"}


def test_config_file_holds_no_secret(plan):
    upload = container(plan, "gateway").inputs["uploads"]
    assert not is_secret(upload), "the config file must stay reviewable in previews"
    text = reveal(upload)[0]["content"]
    for name, value in secret_envs_of(plan, "gateway").items():
        if name not in ("LITELLM_LOCAL_MODEL_COST_MAP", "PYTHON_GC_THRESHOLD"):
            assert value not in text, f"{name} leaked into the config file"


def test_gateway_envs(plan):
    envs = secret_envs_of(plan, "gateway")
    assert set(envs) == {
        "DATABASE_URL", "LITELLM_LOCAL_MODEL_COST_MAP", "LITELLM_MASTER_KEY", "LITELLM_SALT_KEY",
        "PYTHON_GC_THRESHOLD", "REDIS_PASSWORD", "VLLM_QWEN3_API_KEY", "VLLM_SMALL_API_KEY",
    }
    assert envs["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    # The streaming defaults (benchmarks/chunk_cost.py), a plain env LiteLLM reads at start.
    assert envs["PYTHON_GC_THRESHOLD"] == "5000,20,100"
    pg = secret_envs_of(plan, "gateway-postgres")["POSTGRES_PASSWORD"]
    assert envs["DATABASE_URL"] == f"postgresql://litellm:{pg}@litellm-postgres:5432/litellm"
    assert envs["REDIS_PASSWORD"] == secret_envs_of(plan, "gateway-redis")["REDIS_PASSWORD"]
    key = envs["LITELLM_MASTER_KEY"]
    assert key.startswith("sk-") and len(key) >= 3 + 32 and key != "sk-1234"
    assert len(envs["LITELLM_SALT_KEY"]) >= 32


def test_salt_key_is_never_rotated_by_input_changes(plan):
    salt = plan.named("gateway-salt-key")
    assert {"length", "special"} <= set(salt.ignore_changes)


def test_master_key_from_stack_secret():
    from config.secrets import SecretValue

    given = "sk-" + "a1" * 20
    plan = run_program({"vllm": VLLM, "masterKey": SecretValue()}, secrets={"masterKey": given})
    assert secret_envs_of(plan, "gateway")["LITELLM_MASTER_KEY"] == given
    assert not any(r.name == "gateway-master-key" for r in plan.resources)
    assert is_secret(plan.outputs["masterKey"]) and reveal(plan.outputs["masterKey"]) == given


def test_outputs(plan):
    assert plan.outputs["gatewayUrl"] == "http://localhost:4400"
    assert is_secret(plan.outputs["masterKey"])
    assert plan.outputs["models"]["chat"] == ["qwen3", "small"]


def test_render_is_sorted_and_rejects_unknown_names():
    entries = [
        {"model_name": "b", "model": "hosted_vllm/b", "api_base": "http://b:8000/v1", "mode": "chat"},
        {"model_name": "a", "model": "hosted_vllm/a", "api_base": "http://a:8000/v1", "mode": "chat"},
    ]
    text = render_litellm_config(entries, {}, {"host": "r", "port": 6379})
    assert [m["model_name"] for m in yaml.safe_load(text)["model_list"]] == ["a", "b"]
    with pytest.raises(ValueError, match="unknown models"):
        render_litellm_config(entries, {"fallbacks": {"a": ["c"]}}, {"host": "r", "port": 6379})
    with pytest.raises(ValueError, match="unknown mode"):
        render_litellm_config([{**entries[0], "mode": "chatt"}], {}, {"host": "r", "port": 6379})
