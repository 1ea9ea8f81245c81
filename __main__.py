"""llmstack: read the stack config, build the components, export the gateway's outputs."""

from config.program import run

run()
