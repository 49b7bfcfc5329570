"""Fabula's model services: caption (LLaVA), illustrate (SDXL) and llm (chat completions)."""
