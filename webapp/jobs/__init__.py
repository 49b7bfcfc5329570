"""Durable jobs: the store (SQLite by default), the artifact folder, progress events and the runner."""
