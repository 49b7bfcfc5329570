"""What a story is made of: options, languages, style presets, the plan, prompts, and the LLM writer."""
