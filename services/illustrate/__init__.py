"""The illustration service: SDXL base + refiner behind the OpenAI Images API, with micro-batching."""
