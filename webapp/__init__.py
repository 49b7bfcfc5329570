"""Fabula's web app: the story pipeline, the book, the job store, the REST API and the Gradio UI."""
