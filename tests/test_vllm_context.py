"""config/vllm_context.py: what a vLLM entry's hfOverrides must carry for its maxModelLen (the bad cases are in tests/bad_stacks/)."""

from config.vllm_context import entry_issues

YARN_131K = {
    "max_position_embeddings": 131072,
    "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768, "rope_theta": 1000000.0},
}


def paths(overrides, max_model_len=None):
    return sorted(i.path for i in entry_issues(("vllm", 0), overrides, max_model_len))


def test_the_whole_yarn_override_passes_up_to_its_length():
    assert paths(YARN_131K, 131072) == []
    assert paths(YARN_131K, 32768) == []
    assert paths(YARN_131K) == []


def test_a_rope_override_that_keeps_rope_theta_and_no_scaling_passes():
    assert paths({"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}, 8192) == []


def test_overrides_without_rope_are_not_this_checks_business():
    assert paths({"max_position_embeddings": 65536}, 65536) == []
    assert paths({"sliding_window": None}, 131072) == []


def test_one_past_the_length_is_refused():
    assert paths(YARN_131K, 131073) == ["llmstack:vllm[0].maxModelLen", "llmstack:vllm[0].maxModelLen"]


def test_legacy_type_key_counts_as_yarn():
    legacy = {"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768, "rope_theta": 1e6}}
    assert paths(legacy, 131072) == ["llmstack:vllm[0].hfOverrides"]


def test_max_position_embeddings_must_be_a_whole_number():
    bad = {**YARN_131K, "max_position_embeddings": "128k"}
    assert "llmstack:vllm[0].hfOverrides.max_position_embeddings" in paths(bad, 131072)
