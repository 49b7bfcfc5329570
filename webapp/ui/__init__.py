"""The storybook studio: a Gradio Blocks page mounted at / that drives the same Workshop as the REST API."""

from webapp.ui.blocks import build_ui, mount_ui

__all__ = ["build_ui", "mount_ui"]
