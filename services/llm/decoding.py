"""Pure pieces of the token loop: sampling, incremental detokenisation, and stop sequences.

Kept apart from the engine so each can be tested and read without a model.
"""

from __future__ import annotations

from typing import Any

import torch

REPLACEMENT_CHARACTER = "\ufffd"


# Nucleus sampling first looks among this many most likely tokens; only when they hold less than `top_p` of the
# probability is the whole vocabulary sorted (rare: that needs a very flat distribution).
NUCLEUS_CANDIDATES = 256
# Below this temperature, sampling is greedy (dividing by a vanishing temperature would overflow to inf and NaN).
GREEDY_BELOW = 1e-5


def sample_token(logits: torch.Tensor, *, temperature: float, top_p: float, generator: torch.Generator) -> int | None:
    """Pick the next token from 1-D float32 CPU logits (already masked); None when every token is forbidden.

    Temperature 0 means greedy. `top_p` keeps the smallest set of most likely tokens whose probability
    reaches `top_p` (nucleus sampling), always at least one. The draw is one uniform number against the
    cumulative probabilities (inverse transform), a tenth of `torch.multinomial`'s cost on a 50k vocabulary.
    """
    logits = torch.nan_to_num(logits, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
    best = int(torch.argmax(logits))
    if logits[best] == float("-inf"):
        return None
    if temperature < GREEDY_BELOW:
        return best
    probabilities = torch.softmax(logits / temperature, dim=-1)
    tokens: torch.Tensor | None = None
    if top_p < 1.0:
        probabilities, tokens = torch.topk(probabilities, min(NUCLEUS_CANDIDATES, probabilities.numel()))
        if float(probabilities.sum()) < top_p:
            probabilities, tokens = torch.sort(torch.softmax(logits / temperature, dim=-1), descending=True)
        before = torch.cumsum(probabilities, dim=-1) - probabilities
        probabilities = probabilities[before < top_p]
    cumulative = torch.cumsum(probabilities, dim=-1)
    # A draw in (0, total]: the first token whose cumulative probability reaches it has a probability above zero.
    draw = (1.0 - torch.rand(1, generator=generator)) * cumulative[-1]
    index = min(int(torch.searchsorted(cumulative, draw)), cumulative.numel() - 1)
    return int(tokens[index]) if tokens is not None else index


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas, holding back half-written UTF-8 characters.

    Byte-level tokens can split one character (an emoji, a Hangul syllable) across tokens; decoding them
    alone gives U+FFFD. Only a short window of recent tokens is decoded at each step, so the cost per token
    stays constant however long the answer grows.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.token_ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, token_ids: list[int]) -> str:
        self.token_ids.extend(token_ids)
        prefix_text = self._decode(self.token_ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self.token_ids[self._prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith(REPLACEMENT_CHARACTER):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self.token_ids)
            return new_text[len(prefix_text) :]
        return ""

    def text(self) -> str:
        return self._decode(self.token_ids)

    def _decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


class StopSequences:
    """Cuts the answer at the first stop sequence and holds back text that might be the start of one."""

    def __init__(self, sequences: list[str]) -> None:
        self.sequences = [sequence for sequence in sequences if sequence]
        self._hold = max((len(sequence) for sequence in self.sequences), default=1) - 1
        self.text = ""
        self._released = 0
        self.stopped = False

    def push(self, delta: str) -> str:
        """Add generated text; return the part that is safe to send now."""
        if self.stopped:
            return ""
        search_from = max(0, len(self.text) - self._hold)
        self.text += delta
        cut = min((index for index in (self.text.find(sequence, search_from) for sequence in self.sequences) if index >= 0), default=-1)
        if cut >= 0:
            self.text = self.text[:cut]
            self.stopped = True
            return self._release(len(self.text))
        return self._release(max(self._released, len(self.text) - self._hold))

    def flush(self) -> str:
        """At the end of generation: everything not yet sent."""
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        piece = self.text[self._released : upto]
        self._released = max(self._released, upto)
        return piece
