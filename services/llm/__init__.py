"""The OpenAI-compatible chat service: a transformers model behind `/v1/chat/completions`, with JSON-schema
output enforced by constrained decoding. `create_app` builds the FastAPI app."""
