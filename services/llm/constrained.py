"""Structured output by constrained decoding: `response_format` becomes a grammar that masks every next token.

llguidance turns the JSON schema (or "any JSON object") into a grammar over the tokenizer's vocabulary; at each
step the matcher says which tokens keep the text a valid prefix, and every other logit is set to -inf. There
is no retry loop: the model cannot write anything the schema rejects.

Choices worth knowing:
- JSON is compact (`{"a":1,"b":[2]}`): free whitespace lets a model pad forever between tokens.
- Strict objects: a schema object that lists `properties` and says nothing of `additionalProperties` admits
  no other keys, and `prefixItems` without `items` no other items (OpenAI's strict mode; llguidance
  otherwise follows JSON Schema, where extra keys are allowed and a model fills them with keys no one asked
  for). `json_object` mode stays any object.
- Special tokens (`<s>`, `<|im_start|>`, ...) never match grammar text in llguidance, and its strings admit
  neither raw control characters nor UTF-8-encoded surrogates (checked with llguidance 1.9), so no token
  needs hiding here.
- The budget: before each token is accepted, the decoder checks that the JSON can still be finished within
  the tokens left (see `json_closing`). When it cannot, it stops following the model and writes the shortest
  completion instead, so a schema answer ends as valid JSON with `finish_reason: "stop"`. Where no completion
  can be found (see `json_closing.SEARCH_LIMIT`), the model writes under the grammar alone and an answer cut
  by `max_tokens` is reported as `"length"`, never as a silent invalid "stop".
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import llguidance
import llguidance.hf
import numpy as np
import torch

from services.llm.json_closing import JsonScanner, completion_tokens, shortest_completion
from services.llm.matcher import GrammarMatcher, TokenVocabulary
from shared.errors import InvalidRequest, ModelUnavailable

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions  # a TypedDict of llguidance's stubs only

SCHEMA_PARAM = "response_format.json_schema.schema"
_ANY_OBJECT: dict[str, Any] = {"type": "object"}
_COMPACT: JsonCompileOptions = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
# Schema keywords whose value is a schema, a map of names to schemas, or a list of schemas.
_SUBSCHEMA = ("items", "additionalProperties", "contains", "not", "if", "then", "else")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")
# How much room, in bytes, the budget must have beyond the previous completion for it to be reused unchecked
# by a new search (see `JsonConstraint._reused_closing`).
_REUSE_MARGIN = 64


class GrammarLibrary:
    """Compiles `response_format` schemas for one tokenizer and keeps the most recent ones compiled."""

    def __init__(self, tokenizer: Any, *, vocab_size: int, stop_token_ids: list[int], cache_size: int = 64) -> None:
        try:
            self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=list(stop_token_ids) or None)
        except ValueError as exc:
            raise ModelUnavailable(
                f"Constrained decoding needs a fast tokenizer (a tokenizer.json); this model's cannot be used: {exc}",
                param="FABULA_LLM_MODEL",
            ) from None
        self.vocabulary = TokenVocabulary(self.tokenizer, size=vocab_size, stop_token_ids=stop_token_ids)
        self._cache: OrderedDict[str, GrammarMatcher] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.compilations = 0

    def compile(self, schema: dict[str, Any] | None) -> GrammarMatcher:
        """The grammar for `schema` (None: any JSON object), as a matcher in its start state for generations to
        fork; raises `InvalidRequest` naming the schema field."""
        schema = _ANY_OBJECT if schema is None else strict_schema(schema)
        key = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(key, overrides=_COMPACT)
        except ValueError as exc:
            raise InvalidRequest(f"`{SCHEMA_PARAM}` is not a JSON schema this server can enforce: {exc}", param=SCHEMA_PARAM) from None
        matcher = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            reason = matcher.get_error().strip().splitlines()[0]
            raise InvalidRequest(f"`{SCHEMA_PARAM}` is not a JSON schema this server can enforce: {reason}", param=SCHEMA_PARAM)
        compiled = GrammarMatcher(matcher, self.vocabulary, stop_token_id=self.tokenizer.eos_token)
        with self._lock:
            self.compilations += 1
            self._cache[key] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    @property
    def cached(self) -> int:
        return len(self._cache)

    def minimum_tokens(self, grammar: GrammarMatcher, *, limit: int) -> int | None:
        """An upper bound on the tokens the shortest valid answer takes (its bytes), or None if none was found
        within `limit` bytes."""
        constraint = JsonConstraint(grammar, self)
        return constraint.start(budget=limit)


def strict_schema(schema: Any, *, open_level: bool = False) -> Any:
    """`schema` with OpenAI's strict mode written out: no keys beyond `properties`, no items beyond `prefixItems`,
    unless the schema allows them itself.

    The members of an `allOf` stay open at their own level (each closed alone, together they would admit no
    key that only another member names); what they nest is closed.
    """
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in _SUBSCHEMA_MAPS and isinstance(value, dict):
            result[keyword] = {name: strict_schema(subschema) for name, subschema in value.items()}
        elif keyword in _SUBSCHEMA_LISTS and isinstance(value, list):
            result[keyword] = [strict_schema(subschema) for subschema in value]
        elif keyword == "allOf" and isinstance(value, list):
            result[keyword] = [strict_schema(subschema, open_level=True) for subschema in value]
        elif keyword in _SUBSCHEMA:
            result[keyword] = strict_schema(value)
        else:
            result[keyword] = value
    if not open_level:
        if "properties" in result and not {"additionalProperties", "patternProperties", "unevaluatedProperties"} & result.keys():
            result["additionalProperties"] = False
        if "prefixItems" in result and not {"items", "unevaluatedItems"} & result.keys():
            result["items"] = False
    return result


class JsonConstraint:
    """One generation's grammar state: masks logits, accepts tokens, and finishes the JSON within budget."""

    def __init__(self, grammar: GrammarMatcher, library: GrammarLibrary) -> None:
        self.vocabulary = library.vocabulary
        self.matcher = grammar.fork()
        self.scanner = JsonScanner()
        self._unguarded_tokens = 0
        self._next_search = 1
        self.closing: bytes | None = None

    def start(self, *, budget: int) -> int | None:
        """Work out the shortest completion of the empty answer; its length, or None if none fits `budget`."""
        self.closing = shortest_completion(self.matcher, self.scanner, self.vocabulary, limit=budget)
        return None if self.closing is None else len(self.closing)

    def mask(self, logits: torch.Tensor) -> None:
        """Set the logits of every token the grammar forbids to -inf, in place (a 1-D CPU tensor)."""
        logits.numpy()[~self.matcher.allowed()] = -np.inf

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
                closing = shortest_completion(self.matcher, scanner, self.vocabulary, limit=budget_after)
            if closing is None and self.closing is not None:
                self.matcher.rollback(1)
                return False
            if closing is None:
                self._next_search *= 2
            self.closing = closing
        if self.closing is None:
            self._unguarded_tokens += 1
        self.scanner = scanner
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
        if scanner.in_plain_string() and self.matcher.completes(previous):
            return previous
        return None

    def finish(self) -> list[int] | None:
        """The tokens of the shortest completion from here (accepted by the matcher), or None if unwritable."""
        if self.closing is None:
            return None
        return completion_tokens(self.matcher, self.closing, self.vocabulary)

    @property
    def completed(self) -> bool:
        return self.matcher.accepting

    def only_stop_allowed(self) -> bool:
        """True once the JSON is complete and nothing but a stop token may follow."""
        return self.matcher.accepting and self.matcher.stopped
