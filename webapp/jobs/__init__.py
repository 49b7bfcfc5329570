"""Durable jobs: the store (SQLite or PostgreSQL), the artifact folder, progress events, the schedulers and the pipeline."""
