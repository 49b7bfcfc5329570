"""The grammar matcher as the decoder uses it: llguidance's `LLMatcher`, plus byte strings and step rollback.

llguidance matches whole tokens, and once it has consumed a token the grammar rejects it stays in an error
state for good (llguidance 1.9). The closing search (see `json_closing`) tries byte strings and takes back
the ones that do not fit, so `GrammarMatcher` spells bytes as tokens (`TokenVocabulary.spell`), checks
them before it consumes them, and remembers how many tokens each accepted step took, so that `rollback(1)`
takes back one whole step, a token or a byte string.

Checking (`validate_tokens`) costs about a tenth of consuming (`consume_tokens`, which also updates the
parser's history and stop state; about 4 us a token, llguidance 1.9.1), so a question that needs no new
state, such as "may this come next?" or "does this closing still finish the answer?", is answered by
checking alone (`allows`, `completes`).
"""

from __future__ import annotations

import llguidance
import llguidance.numpy
import numpy as np

_SHORT_PIECE = 4
_SHORT_PIECES_KEPT = 4096


class TokenVocabulary:
    """The bytes of every token, and which tokens the closing may be written with (no special or stop tokens)."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, *, size: int, stop_token_ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.decoded = [tokenizer.decode_bytes([token_id]) for token_id in range(size)]
        self.size = size
        hidden = set(stop_token_ids) | {token_id for token_id in range(size) if tokenizer.is_special_token(token_id)}
        self.usable = np.array([token_id not in hidden and bool(self.decoded[token_id]) for token_id in range(size)])
        self.by_bytes: dict[bytes, int] = {}
        for token_id in np.flatnonzero(self.usable).tolist():
            self.by_bytes.setdefault(self.decoded[token_id], token_id)
        self.longest = max((len(text) for text in self.by_bytes), default=1)
        self.lengths = np.array([len(text) for text in self.decoded])
        self._byte_tokens = [self.by_bytes.get(bytes([byte])) for byte in range(256)]
        self._short_spellings: dict[bytes, list[int] | None] = {}

    def spell(self, data: bytes) -> list[int] | None:
        """Tokens that spell `data`, few of them; None when some byte has no token.

        Valid UTF-8 goes through llguidance's greedy longest-match tokenizer (about 3 us for a 25-byte key,
        and a third as many tokens to consume as bytes); a piece that ends inside a character goes byte by byte.
        The closing search asks for the same few short pieces (`"`, `a"`, `]`) over and over; those are kept.
        """
        if data in self._short_spellings:
            return self._short_spellings[data]
        tokens = self._spell(data)
        if len(data) <= _SHORT_PIECE and len(self._short_spellings) < _SHORT_PIECES_KEPT:
            self._short_spellings[data] = tokens
        return tokens

    def _spell(self, data: bytes) -> list[int] | None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            tokens = [self._byte_tokens[byte] for byte in data]
            return None if None in tokens else tokens  # type: ignore[return-value]
        return self.tokenizer.greedy_tokenize(text)


class GrammarMatcher:
    """One position in a grammar: which tokens may come next, and steps forward and back.

    Made by `GrammarLibrary.compile` in the grammar's start state; each generation works on a `fork()`.
    """

    def __init__(self, matcher: llguidance.LLMatcher, vocabulary: TokenVocabulary, *, stop_token_id: int) -> None:
        self._matcher = matcher
        self._vocabulary = vocabulary
        self._stop_token_id = stop_token_id
        self._step_tokens: list[int] = []
        self._words = llguidance.numpy.get_bitmask_shape(1, vocabulary.size)[1]

    def fork(self) -> GrammarMatcher:
        """An independent copy at the same position; it cannot roll back past this point."""
        return GrammarMatcher(self._matcher.deep_copy(), self._vocabulary, stop_token_id=self._stop_token_id)

    def accept_token(self, token_id: int) -> bool:
        """Take one token if the grammar allows it; False (and no change) otherwise."""
        return self._accept([token_id])

    def accept_bytes(self, data: bytes) -> bool:
        """Take `data` as one step if the grammar allows all of it; False (and no change) otherwise."""
        tokens = self._vocabulary.spell(data)
        return tokens is not None and self._accept(tokens)

    def allows(self, data: bytes) -> bool:
        """Whether the grammar allows `data` next (checked, not taken)."""
        tokens = self._vocabulary.spell(data)
        return tokens is not None and self._matcher.validate_tokens(tokens) == len(tokens)

    def completes(self, data: bytes) -> bool:
        """Whether `data` would finish the answer from here (checked, not taken): the stop token may follow it."""
        tokens = self._vocabulary.spell(data)
        return tokens is not None and self._matcher.validate_tokens([*tokens, self._stop_token_id]) == len(tokens) + 1

    def rollback(self, steps: int = 1) -> None:
        """Take back the last `steps` accepted tokens or byte strings."""
        if steps <= 0:
            return
        tokens = sum(self._step_tokens[-steps:])
        del self._step_tokens[-steps:]
        self._matcher.rollback(tokens)

    def forced_bytes(self) -> bytes:
        """The bytes the grammar allows no alternative to from here (`,"pages":[{"text":"`), maybe empty."""
        return self._matcher.compute_ff_bytes()

    def allowed(self) -> np.ndarray:
        """A boolean vector over the vocabulary: the tokens the grammar allows next (stop tokens included)."""
        bitmask = np.empty((1, self._words), dtype=np.int32)
        llguidance.numpy.fill_next_token_bitmask(self._matcher, bitmask)
        if self._matcher.is_error():
            raise RuntimeError(f"The grammar matcher failed: {self._matcher.get_error().splitlines()[0]}")
        # Bit j of word i is token 32*i + j; on a little-endian CPU (x86-64, arm64) that is also byte order.
        # numpy unpacks and applies it in one thread (about 25 us for a 49k vocabulary, mask included).
        return np.unpackbits(bitmask.view(np.uint8), count=self._vocabulary.size, bitorder="little").view(bool)

    @property
    def accepting(self) -> bool:
        """The text so far is a complete answer (a stop token may follow)."""
        return self._matcher.is_accepting()

    @property
    def stopped(self) -> bool:
        """Nothing but a stop token may follow."""
        return self._matcher.is_stopped()

    def _accept(self, tokens: list[int]) -> bool:
        if self._matcher.validate_tokens(tokens) < len(tokens) or not self._matcher.consume_tokens(tokens):
            return False
        self._step_tokens.append(len(tokens))
        return True
