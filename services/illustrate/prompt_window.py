"""Count a prompt's tokens with the loaded text encoders' own tokenizers, and say in words what they do not read.

SDXL's text encoders read `model_max_length` tokens (77, the start and end tokens included); diffusers drops the
rest, the prompt with an unstructured log line and the negative prompt without a word. The service still paints
the picture, and tells the caller which words were not used.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TAIL_WORDS = 5  # how many of the last words read a warning quotes


@dataclass(frozen=True)
class WindowOverflow:
    """A text longer than a tokenizer's window: `tokens` and `window` count the start and end tokens."""

    field: str
    text: str
    tokens: int
    window: int
    tokenizer: str
    read_until: int  # characters of `text` the encoder reads, backed off to the start of a word it splits

    @property
    def unused_text(self) -> str:
        return self.text[self.read_until :].strip()

    @property
    def message(self) -> str:
        """The sentence for the caller, e.g. "The prompt is 96 tokens; the text encoders read 77, so …"."""
        what = "negative prompt" if self.field == "negative_prompt" else "prompt"
        tail = " ".join(self.text[: self.read_until].split()[-TAIL_WORDS:]).rstrip(",;:.!? ")
        if not tail:
            return f"The {what} is {self.tokens} tokens; the text encoders read {self.window}, so its first word was cut."
        return (
            f"The {what} is {self.tokens} tokens; the text encoders read {self.window}, "
            f"so the words after '{tail}' were not used."
        )


class PromptWindow:
    """The pipelines' tokenizers, copied so counting never races diffusers, which sets truncation on its own."""

    def __init__(self, tokenizers: dict[str, Any]) -> None:
        self._tokenizers = {name: copy.deepcopy(tokenizer) for name, tokenizer in tokenizers.items()}
        self._lock = threading.Lock()

    @classmethod
    def from_pipelines(cls, pipelines: Iterable[Any]) -> PromptWindow:
        """Every distinct tokenizer of `pipelines` (SDXL base: `tokenizer` and `tokenizer_2`; the refiner: `tokenizer_2`)."""
        found: dict[str, Any] = {}
        for pipeline in pipelines:
            for attribute in ("tokenizer", "tokenizer_2"):
                tokenizer = getattr(pipeline, attribute, None)
                if tokenizer is not None and all(tokenizer is not other for other in found.values()):
                    found[attribute if attribute not in found else f"refiner.{attribute}"] = tokenizer
        return cls(found)

    def overflow(self, field: str, text: str | None) -> WindowOverflow | None:
        """The earliest cut any tokenizer makes of `text`, or None when every encoder reads all of it."""
        if not text:
            return None
        earliest: WindowOverflow | None = None
        with self._lock:
            for name, tokenizer in self._tokenizers.items():
                encoding = tokenizer(text, return_offsets_mapping=True, verbose=False)
                window = int(tokenizer.model_max_length)
                tokens = len(encoding["input_ids"])
                if tokens <= window:
                    continue
                # The encoder reads the start token, window - 2 tokens of text, and the end token.
                read_until = _word_start(text, encoding["offset_mapping"][window - 2][1])
                if earliest is None or read_until < earliest.read_until:
                    earliest = WindowOverflow(field, text, tokens, window, name, read_until)
        return earliest

    def overflows(self, prompt: str, negative_prompt: str | None) -> list[WindowOverflow]:
        found = (self.overflow("prompt", prompt), self.overflow("negative_prompt", negative_prompt))
        return [overflow for overflow in found if overflow is not None]


def _word_start(text: str, position: int) -> int:
    """`position`, or the start of the word it falls inside (a word split by the cut was not read whole)."""
    if position >= len(text) or not text[position].isalnum():
        return position
    while position > 0 and text[position - 1].isalnum():
        position -= 1
    return position
