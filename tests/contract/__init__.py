"""Contract test: the rendered LiteLLM config, loaded by the real LiteLLM proxy, in front of the engine stand-ins."""
