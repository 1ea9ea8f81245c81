"""Stand-ins for the GPU engines: stdlib servers that parse each image's real command line and
env, speak its API, and record every request at GET /__stub__/requests (DELETE clears it).

    python -m tests.standins.vllm MODEL --served-model-name NAME ... --port 8000   # `vllm serve` args
    python -m tests.standins.vllm_stream MODEL ...   # the same args; streams token by token (benchmarks)
    python -m tests.standins.ollama serve | list | pull TAG | rm TAG               # env OLLAMA_HOST
    python -m tests.standins.infinity v2 --model-id A --model-id B --port 7997
    python -m tests.standins.speaches [--factory speaches.main:create_app]         # env UVICORN_PORT, API_KEY
"""
