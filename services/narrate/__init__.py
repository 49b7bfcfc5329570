"""The narrate service: text in, speech out, in the OpenAI speech shape (`POST /v1/audio/speech`)."""
