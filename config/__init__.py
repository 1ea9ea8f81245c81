"""The llmstack stack config: schema, validation, and the `python -m config check|render|smoke` tools."""
