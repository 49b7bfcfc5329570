"""Load a LLaVA checkpoint once and caption batches of images with it.

The processor's own chat template writes the prompt, so LLaVA 1.5, LLaVA 1.6 (LLaVA-NeXT) and LLaVA-family
checkpoints such as llava-interleave each get the conversation format they were trained on.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from services.caption.blocked_words import blocked_token_sequences
from shared.dtypes import choose_dtype, model_dtype
from shared.errors import InvalidRequest, ModelUnavailable
from shared.model_holder import EngineInfo
from shared.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = (
    "Describe this picture vividly for a children's storybook: the people, animals and objects in it and how "
    "they look, the setting, the colours and the mood."
)
DEFAULT_MAX_NEW_TOKENS = 96

ARCHITECTURES = {
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
}


@dataclass(frozen=True)
class CaptionItem:
    """One request's share of a batched `caption` call."""

    image: Image.Image
    prompt: str
    max_new_tokens: int


@dataclass(frozen=True)
class CaptionResult:
    caption: str
    new_tokens: int


def caption_batch(engine: CaptionEngine, items: list[CaptionItem]) -> list[CaptionResult]:
    """One `generate` call for the requests the service's batcher gathered.

    Captions of any prompt and token limit can share a call (it runs to the longest limit and each caption is cut
    to its own), so the requests need no batch key.
    """
    return engine.caption([item.image for item in items], [item.prompt for item in items], [item.max_new_tokens for item in items])


def resolve_device(device: str) -> tuple[Any, Any]:
    """`cpu`, `cuda` or `cuda:N` → (torch device, dtype): fp32 on CPU, bf16 on GPUs that have it, else fp16."""
    import torch

    if device == "cpu":
        return torch.device("cpu"), choose_dtype(device)
    if not device.startswith("cuda"):
        raise ModelUnavailable(f"`--device` must be cpu, cuda or cuda:N, not {device!r}.", param="device")
    if not torch.cuda.is_available():
        raise ModelUnavailable(f"`--device {device}` asks for a GPU, but torch sees no CUDA device here.", param="device")
    target = torch.device(device)
    if target.index is not None and target.index >= torch.cuda.device_count():
        raise ModelUnavailable(
            f"`--device {device}` names GPU {target.index}, but this machine has {torch.cuda.device_count()}.", param="device"
        )
    if target.index is not None:
        torch.cuda.set_device(target)
    dtype = choose_dtype(device)
    return target, dtype


class CaptionEngine:
    """A LLaVA model and its processor on one device; `caption` is called from one worker thread at a time."""

    def __init__(
        self, *, model: Any, processor: Any, model_id: str, device: Any, dtype: Any, blocked_sequences: list[list[int]]
    ) -> None:
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.blocked_sequences = blocked_sequences
        self.image_token = getattr(processor, "image_token", "<image>")
        tokenizer = processor.tokenizer
        end_ids = model.generation_config.eos_token_id
        end_ids = end_ids if isinstance(end_ids, list) else [end_ids]
        self._stop_ids = {token_id for token_id in (*end_ids, tokenizer.eos_token_id) if token_id is not None}
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self._stop_ids), None)

    @classmethod
    def load(cls, model_path: Path, *, model_id: str, device: str, settings: Settings) -> CaptionEngine:
        import transformers
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        torch_device, dtype = resolve_device(device)[0], model_dtype(device, settings)
        config = AutoConfig.from_pretrained(model_path)
        architecture = ARCHITECTURES.get(config.model_type)
        model_class = getattr(transformers, architecture) if architecture else AutoModelForImageTextToText
        if architecture is None:
            logger.warning("not a LLaVA 1.5/1.6 checkpoint; loading it as a generic image-text model",
                           extra={"fields": {"model_type": config.model_type}})
        processor = AutoProcessor.from_pretrained(model_path)
        if not getattr(processor, "chat_template", None):
            raise ModelUnavailable(
                f"The caption model '{model_id}' has no chat template in its processor, so Fabula cannot write its prompt.",
                param="FABULA_CAPTION_MODEL",
            )
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"  # decoder-only batches must end at the same position
        # `device_map` streams the weights straight onto the device instead of staging a 13B copy in host memory.
        model = model_class.from_pretrained(model_path, dtype=dtype, device_map=str(torch_device)).eval()
        blocked_sequences = blocked_token_sequences(settings.blocked_words, tokenizer)
        logger.info(
            "caption model loaded",
            extra={"fields": {"model": model_id, "class": model_class.__name__, "device": str(torch_device),
                              "dtype": str(dtype).removeprefix("torch."), "blocked_sequences": len(blocked_sequences)}},
        )
        return cls(model=model, processor=processor, model_id=model_id, device=torch_device, dtype=dtype,
                   blocked_sequences=blocked_sequences)

    def info(self) -> EngineInfo:
        return EngineInfo(
            model=self.model_id,
            device=str(self.device),
            dtype=str(self.dtype).removeprefix("torch."),
            extra={"architecture": type(self.model).__name__, "blocked_sequences": len(self.blocked_sequences)},
        )

    def check_prompt(self, prompt: str) -> None:
        """The image placeholder is the processor's to place; one typed by a user would break the image count."""
        if self.image_token and self.image_token in prompt:
            raise InvalidRequest(f"`prompt` may not contain the image placeholder {self.image_token!r}.", param="prompt")

    def render_prompt(self, prompt: str) -> str:
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(conversation, add_generation_prompt=True)

    def caption(
        self, images: list[Image.Image], prompts: list[str], max_new_tokens: int | Sequence[int]
    ) -> list[CaptionResult]:
        """Caption a batch with greedy decoding; `max_new_tokens` may differ per image (the batch runs to the longest)."""
        import torch

        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        limits = [max_new_tokens] * len(images) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        if len(limits) != len(images):
            raise ValueError(f"{len(images)} images but {len(limits)} token limits")
        for prompt in prompts:
            self.check_prompt(prompt)
        texts = [self.render_prompt(prompt) for prompt in prompts]
        inputs = self.processor(images=images, text=texts, return_tensors="pt", padding=True)
        inputs = inputs.to(self.device, dtype=self.dtype)
        options: dict[str, Any] = {
            "max_new_tokens": max(limits), "do_sample": False, "num_beams": 1, "pad_token_id": self._pad_id,
        }
        if self.blocked_sequences:
            options["bad_words_ids"] = self.blocked_sequences
        with torch.inference_mode():
            output = self.model.generate(**inputs, **options)
        generated = output[:, inputs["input_ids"].shape[1]:].tolist()
        return [self._decode(tokens, limit) for tokens, limit in zip(generated, limits, strict=True)]

    def _decode(self, tokens: list[int], limit: int) -> CaptionResult:
        kept: list[int] = []
        for token_id in tokens[:limit]:
            if token_id in self._stop_ids:
                break
            kept.append(token_id)
        text = self.processor.tokenizer.decode(kept, skip_special_tokens=True)
        return CaptionResult(caption=clean_caption(text), new_tokens=len(kept))


def clean_caption(text: str) -> str:
    """One line of printable text: control characters count as whitespace, and whitespace runs become one space.

    Control characters become spaces rather than vanishing, so removing one never joins two pieces into a
    blocked word.
    """
    printable = "".join(" " if unicodedata.category(character) == "Cc" else character for character in text)
    return " ".join(printable.split())
