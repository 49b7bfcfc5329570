"""The caption service: a LLaVA model behind `POST /v1/caption` (`create_app`, `resolve_caption_model` in `app`)."""
