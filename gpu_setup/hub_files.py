"""Which files of a model repository Fabula needs: pure functions over the repository's file list.

A hub repository often holds the same weights several times (safetensors, PyTorch `.bin`, Flax, ONNX,
OpenVINO, single-file checkpoints, fp32 and fp16 variants). Fabula loads safetensors through
`from_pretrained`, so it needs the configs, the tokenizer files and one copy of the weights:

- a transformers repository (LLaVA, the LLM): the top-level configs, tokenizer and processor files and the
  `.safetensors` shards; `.bin` only when the repository has no safetensors at all;
- a diffusers repository (SDXL): `model_index.json` and, for each component it lists, the component's
  configs and its safetensors weights in the wanted variant (fp16 on the gpu profile), falling back to the
  default weights for a component that has no such variant.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

logger = logging.getLogger(__name__)

MODEL_INDEX = "model_index.json"
SMALL_FILE_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken")
# The refiner borrows these from the base pipeline (see services/illustrate/engine.py).
SHARED_WITH_BASE = ("text_encoder_2", "vae")


def file_variant(path: str) -> str | None:
    """`fp16` for `unet/diffusion_pytorch_model.fp16.safetensors` or `model.fp16-00001-of-00002.safetensors`."""
    middle = _name(path).split(".")[1:-1]
    for part in middle:
        if part in ("safetensors", "bin", "index"):
            continue
        return part.split("-", 1)[0]
    return None


def is_diffusers_repository(files: Iterable[str]) -> bool:
    return MODEL_INDEX in set(files)


def pipeline_components(model_index: dict) -> list[str]:
    """The component folders a pipeline loads: entries like `"unet": ["diffusers", "UNet2DConditionModel"]`."""
    return sorted(
        name
        for name, value in model_index.items()
        if not name.startswith("_") and isinstance(value, list) and len(value) == 2 and all(value)
    )


def select_files(
    files: Iterable[str],
    *,
    model_index: dict | None = None,
    variant: str | None = None,
    skip_components: Collection[str] = (),
) -> list[str]:
    """The files to download, sorted. `model_index` is the parsed `model_index.json` of a diffusers repository."""
    files = sorted(set(files))
    if model_index is None:
        return sorted(_pick_weights("", [path for path in files if "/" not in path], variant=None))
    chosen = [MODEL_INDEX]
    for component in pipeline_components(model_index):
        if component in skip_components:
            chosen.extend(path for path in files if _in_folder(path, component) and path.endswith("config.json"))
            continue
        chosen.extend(_pick_weights(component, [path for path in files if _in_folder(path, component)], variant=variant))
    return sorted(chosen)


def _in_folder(path: str, folder: str) -> bool:
    return path.startswith(folder + "/") and "/" not in path[len(folder) + 1 :]


def _pick_weights(where: str, files: list[str], *, variant: str | None) -> list[str]:
    small = [path for path in files if path.endswith(SMALL_FILE_SUFFIXES) and not _is_foreign_index(path)]
    safetensors = [path for path in files if path.endswith(".safetensors")]
    weights = [path for path in safetensors if file_variant(path) == variant]
    if not weights and variant is not None:
        weights = [path for path in safetensors if file_variant(path) is None]
    if not where and any(_name(path).startswith("model") for path in weights):
        # transformers shards are `model*.safetensors`; others (e.g. `consolidated.safetensors`) are duplicates
        weights = [path for path in weights if _name(path).startswith("model")]
    if not weights and not safetensors:
        weights = [path for path in files if path.endswith(".bin") and file_variant(path) in (variant, None)]
        if weights:
            logger.warning("no safetensors weights; taking the PyTorch .bin files", extra={"fields": {"folder": where or "."}})
    if safetensors:
        small = [path for path in small if not path.endswith(".bin.index.json") and ".bin.index." not in path]
    return small + weights


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _is_foreign_index(path: str) -> bool:
    """Index files of weight formats Fabula never loads (Flax, TensorFlow)."""
    name = _name(path)
    return name.startswith(("flax_model", "tf_model", "diffusion_flax_model")) or ".msgpack." in name or ".h5." in name
