"""An image upload that hands callbacks the uploaded file untouched.

`gr.Image` opens uploads with PIL before a callback runs, so a text file named `.jpg` fails inside Gradio with
PIL's own words. These uploads pass the file's path on instead, and Fabula's validation (`shared.images`)
answers with the same sentence the REST API gives.
"""

from __future__ import annotations

import types
from typing import Any

import gradio as gr


def _path_of_upload(self: gr.Image, payload: Any) -> str | None:
    if payload is not None and getattr(payload, "path", None) and not (payload.url or "").startswith("data:"):
        return str(payload.path)
    return gr.Image.preprocess(self, payload)  # type: ignore[return-value]


def photo_input(**kwargs: Any) -> gr.Image:
    """A stock `gr.Image` (type "filepath") whose preprocessing does not decode the file.

    Not a subclass: Gradio writes a `.pyi` stub beside the module of every component subclass it sees, which
    fails on a read-only install.
    """
    image = gr.Image(type="filepath", **kwargs)
    image.preprocess = types.MethodType(_path_of_upload, image)  # type: ignore[method-assign]
    return image
