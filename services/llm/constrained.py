"""Structured output by constrained decoding: `response_format` becomes a grammar that masks every next token.

xgrammar compiles the JSON schema (or "any JSON object") against the tokenizer's vocabulary; at each step the
matcher says which tokens keep the text a valid prefix, and every other logit is set to -inf. There is no
retry loop: the model cannot write anything the schema rejects.

Choices worth knowing:
- JSON is compact (`{"a":1,"b":[2]}`): free whitespace lets a model pad forever between tokens.
- Special tokens (`<s>`, `<|im_start|>`, ...) are hidden from the grammar: xgrammar would otherwise accept
  them as the literal text of their names, and they vanish on decoding.
- Two gaps in xgrammar 0.2.8's string rules are closed here: it lets raw control characters into
  length-bounded strings (`maxLength`), which `json.loads` rejects, so tokens holding control bytes are
  hidden; and it accepts UTF-8-encoded surrogates (ED A0..BF ..), which decode to U+FFFD characters and
  break `maxLength`, so such tokens are hidden and a token ending in ED may not be followed by A0..BF.
- The budget: before each token is accepted, the decoder checks that the JSON can still be finished within
  the tokens left (see `json_closing`). When it cannot, it stops following the model and writes the shortest
  completion instead, so a schema answer ends as valid JSON with `finish_reason: "stop"`. Where no completion
  can be found (see `json_closing.SEARCH_LIMIT`), the model writes under the grammar alone and an answer cut
  by `max_tokens` is reported as `"length"`, never as a silent invalid "stop".
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from typing import Any

import torch
import xgrammar as xgr

from services.llm.json_closing import JsonScanner, TokenVocabulary, completion_tokens, shortest_completion
from shared.errors import InvalidRequest

SCHEMA_PARAM = "response_format.json_schema.schema"
_ANY_OBJECT: dict[str, Any] = {"type": "object"}
_NATIVE_PREFIX = re.compile(r"^\[[^\]]*\]\s+\S+:\d+:\s*")
_CONTROL_OR_SURROGATE = re.compile(rb"[\x00-\x1f]|\xed[\xa0-\xbf]")
_SURROGATE_LEAD = 0xED
# How much room, in bytes, the budget must have beyond the previous completion for it to be reused unchecked
# by a new search (see `JsonConstraint._reused_closing`).
_REUSE_MARGIN = 64


class GrammarLibrary:
    """Compiles `response_format` schemas for one tokenizer and keeps the most recent ones compiled."""

    def __init__(self, tokenizer: Any, *, vocab_size: int, stop_token_ids: list[int], cache_size: int = 64) -> None:
        detected = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids)
        decoded = [bytes(text) for text in detected.decoded_vocab]
        hidden = set(tokenizer.all_special_ids) | set(stop_token_ids)
        hidden |= {index for index, text in enumerate(decoded) if _CONTROL_OR_SURROGATE.search(text)}
        encoded = [""] * vocab_size
        for token, index in tokenizer.get_vocab().items():
            if index < vocab_size and index not in hidden:
                encoded[index] = token
        self.tokenizer_info = xgr.TokenizerInfo.from_vocab_and_metadata(encoded, detected.dump_metadata())
        usable = torch.tensor([bool(encoded[index]) and bool(decoded[index]) for index in range(vocab_size)])
        self.vocabulary = TokenVocabulary(decoded, usable)
        self.surrogate_tails = torch.tensor([bool(text) and 0xA0 <= text[0] <= 0xBF for text in decoded])
        self.stop_token_ids = list(stop_token_ids)
        self._compiler = xgr.GrammarCompiler(self.tokenizer_info, max_threads=2, cache_enabled=False)
        self._cache: OrderedDict[str, xgr.CompiledGrammar] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.compilations = 0

    def compile(self, schema: dict[str, Any] | None) -> xgr.CompiledGrammar:
        """The grammar for `schema` (None: any JSON object); raises `InvalidRequest` naming the schema field."""
        schema = _ANY_OBJECT if schema is None else schema
        key = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            grammar = self._compiler.compile_json_schema(key, any_whitespace=False, separators=(",", ":"), strict_mode=True)
        except (RuntimeError, ValueError) as exc:
            reason = _NATIVE_PREFIX.sub("", str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidRequest(f"`{SCHEMA_PARAM}` is not a JSON schema this server can enforce: {reason}", param=SCHEMA_PARAM) from None
        with self._lock:
            self.compilations += 1
            self._cache[key] = grammar
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return grammar

    @property
    def cached(self) -> int:
        return len(self._cache)

    def minimum_tokens(self, grammar: xgr.CompiledGrammar, *, limit: int) -> int | None:
        """An upper bound on the tokens the shortest valid answer takes (its bytes), or None if none was found
        within `limit` bytes."""
        constraint = JsonConstraint(grammar, self)
        return constraint.start(budget=limit)


class JsonConstraint:
    """One generation's grammar state: masks logits, accepts tokens, and finishes the JSON within budget."""

    def __init__(self, grammar: xgr.CompiledGrammar, library: GrammarLibrary) -> None:
        self.vocabulary = library.vocabulary
        self.matcher = xgr.GrammarMatcher(grammar, override_stop_tokens=library.stop_token_ids)
        self.scanner = JsonScanner()
        self.bitmask = xgr.allocate_token_bitmask(1, self.vocabulary.size)
        self._scratch = xgr.allocate_token_bitmask(1, self.vocabulary.size)
        self._surrogate_tails = library.surrogate_tails
        self._after_surrogate_lead = False
        self._unguarded_tokens = 0
        self._next_search = 1
        self.closing: bytes | None = None

    def start(self, *, budget: int) -> int | None:
        """Work out the shortest completion of the empty answer; its length, or None if none fits `budget`."""
        self.closing = shortest_completion(self.matcher, self.scanner, self.vocabulary, self._scratch, limit=budget)
        return None if self.closing is None else len(self.closing)

    def mask(self, logits: torch.Tensor) -> None:
        """Set the logits of every token the grammar forbids to -inf, in place (a 1-D CPU tensor)."""
        self.matcher.fill_next_token_bitmask(self.bitmask, 0)
        xgr.apply_token_bitmask_inplace(logits.unsqueeze(0), self.bitmask, vocab_size=self.vocabulary.size)
        if self._after_surrogate_lead:
            logits[self._surrogate_tails] = float("-inf")

    def advance(self, token_id: int, *, budget_after: int) -> bool:
        """Accept `token_id` unless the JSON could then not be finished in `budget_after` tokens.

        Returns False, changing nothing, when the token must not be taken. Without a known completion (none
        was found: an unusual `pattern` or a very large minimum), every grammatical token is taken and the
        search is retried after 1, 2, 4, ... tokens, to get the guarantee back once the answer allows it.
        """
        text = self.vocabulary.decoded[token_id]
        if not self.matcher.accept_token(token_id):
            return False
        scanner = self.scanner.copy()
        scanner.feed(text)
        if self.closing is not None or self._unguarded_tokens + 1 >= self._next_search:
            closing = self._reused_closing(text, scanner, budget_after)
            if closing is None:
                closing = shortest_completion(self.matcher, scanner, self.vocabulary, self._scratch, limit=budget_after)
            if closing is None and self.closing is not None:
                self.matcher.rollback(1)
                return False
            if closing is None:
                self._next_search *= 2
            self.closing = closing
        if self.closing is None:
            self._unguarded_tokens += 1
        self.scanner = scanner
        self._after_surrogate_lead = bool(text) and text[-1] == _SURROGATE_LEAD
        return True

    def _reused_closing(self, text: bytes, scanner: JsonScanner, budget_after: int) -> bytes | None:
        """The previous completion, when it still finishes the JSON after `text` and leaves room to spare.

        Most tokens are words inside a string, after which the same completion (close the string, then the
        rest) still works; checking that is one pass of the matcher instead of a new search. The search runs
        again near the end of the budget, so the answer is not closed earlier than it has to be.
        """
        previous = self.closing
        if previous is None or budget_after - len(previous) < _REUSE_MARGIN:
            return None
        if previous.startswith(text):
            return previous[len(text) :]
        if not scanner.in_plain_string() or not self.matcher.accept_string(previous):
            return None
        finished = self.matcher.is_completed()
        self.matcher.rollback(1)
        return previous if finished else None

    def finish(self) -> list[int] | None:
        """The tokens of the shortest completion from here (accepted by the matcher), or None if unwritable."""
        if self.closing is None:
            return None
        return completion_tokens(self.matcher, self.closing, self.vocabulary)

    @property
    def completed(self) -> bool:
        return self.matcher.is_completed()

    def only_stop_allowed(self) -> bool:
        """True once the JSON is complete and nothing but a stop token may follow."""
        if not self.matcher.is_completed():
            return False
        self.matcher.fill_next_token_bitmask(self._scratch, 0)
        allowed = self.vocabulary.allowed(self._scratch[0])
        return not bool(allowed.any())
