"""Stand-ins for the GPU engines (vLLM, Ollama, Infinity, Speaches): stdlib servers that parse
each image's real command line and env, speak its API, and record what they receive."""
