"""The shortest way to finish a half-written JSON answer, so structured output closes within its token budget.

A random or rambling model inside an unbounded string rarely closes it; without help, generation stops at
`max_tokens` in the middle of a string and the answer does not parse. The constrained decoder therefore keeps,
after every token, a short byte string that completes the JSON from the current grammar state (close the
string, close the containers, add the required keys with the smallest values the schema accepts). It is built
greedily, one decision at a time, by asking the grammar matcher which of a few ranked candidates it accepts:

- inside a string: the closing quote first, else a filler character after which it may close (a
  `minLength` or a `pattern` not met yet), else the filler used least recently;
- outside strings: `]` and `}` first (closing a container never costs more later than now), then the
  cheapest values: `0`, `""`, `[]`, `{}`, `null`, `true`, `false`;
- where the grammar forces a run of text (`,"scene_prompt":"`), that run is taken whole;
- where no candidate fits (an enum, a pattern), the allowed token with the fewest bytes.

Its length in bytes bounds the number of tokens it takes to write (a byte-level vocabulary has a token for
every single byte), which is what the budget check needs. It is not always the global minimum, but it is
always a valid completion, and that is what the guarantee rests on. Pieces are checked as tokens (see
`matcher.TokenVocabulary.spell`); one that ends inside a character needs a token for each of its bytes, which
byte-level BPE and byte fallback have. Where a completion cannot be spelled, none is found, and the decoder
goes without the guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.llm.matcher import GrammarMatcher, TokenVocabulary

QUOTE = 0x22
BACKSLASH = 0x5C
_OPENING = frozenset(b"[{")
_CLOSING = frozenset(b"]}")

_STRING_FILLERS = (b"a", b"0", b"A", b" ", b"-", b".", b"_", b"@", b":", b"/", b"T", b"Z", b"+")
# A completion longer than this is not searched for: the decoder then follows the grammar without the
# budget guarantee and reports "length" if the answer is cut (see `constrained`).
SEARCH_LIMIT = 4096
_FINISH_CHARACTER = (b"\x80", b"\xa0")
_AFTER_BACKSLASH = (b"n",)
_IN_UNICODE_ESCAPE = (b"0",)
_OUTSIDE_STRING = (b"]", b"}", b"0", b'"', b"[", b"{", b"n", b"t", b"f", b"1", b"-")


@dataclass
class JsonScanner:
    """Tracks whether JSON text written so far ends inside a string (and inside an escape), and how deep in
    containers.

    It reads bytes, not characters: the bytes of a multi-byte UTF-8 character never equal `"` or `\\`, so a
    token that splits a character cannot confuse it.
    """

    in_string: bool = False
    escaped: bool = False
    unicode_digits_left: int = 0
    utf8_bytes_left: int = 0
    depth: int = 0

    def feed(self, data: bytes) -> None:
        for byte in data:
            if byte >= 0x80:
                self.utf8_bytes_left = _utf8_bytes_after(byte, self.utf8_bytes_left)
            elif self.unicode_digits_left:
                self.unicode_digits_left -= 1
            elif self.escaped:
                self._end_escape(byte)
            elif self.in_string:
                self._read_in_string(byte)
            else:
                self._read_outside_string(byte)

    def _end_escape(self, byte: int) -> None:
        """The byte after a backslash; `\\u` starts four hex digits."""
        self.escaped = False
        if byte == ord("u"):
            self.unicode_digits_left = 4

    def _read_in_string(self, byte: int) -> None:
        if byte == BACKSLASH:
            self.escaped = True
        elif byte == QUOTE:
            self.in_string = False

    def _read_outside_string(self, byte: int) -> None:
        if byte == QUOTE:
            self.in_string = True
        elif byte in _OPENING:
            self.depth += 1
        elif byte in _CLOSING:
            self.depth -= 1

    def copy(self) -> JsonScanner:
        return JsonScanner(self.in_string, self.escaped, self.unicode_digits_left, self.utf8_bytes_left, self.depth)

    def at_top_level(self) -> bool:
        """Outside every string and container: where the answer can end."""
        return not self.in_string and self.depth == 0

    def in_plain_string(self) -> bool:
        """Inside a string, and not in the middle of an escape or a multi-byte character."""
        return self.in_string and not (self.escaped or self.unicode_digits_left or self.utf8_bytes_left)

    def candidates(self) -> tuple[bytes, ...]:
        if self.utf8_bytes_left:
            return _FINISH_CHARACTER
        if self.unicode_digits_left:
            return _IN_UNICODE_ESCAPE
        if self.escaped:
            return _AFTER_BACKSLASH
        return _STRING_FILLERS if self.in_string else _OUTSIDE_STRING


def _utf8_bytes_after(byte: int, left: int) -> int:
    """How many continuation bytes the current character still needs after `byte` (a byte >= 0x80)."""
    if byte < 0xC0:
        return max(0, left - 1)
    if byte < 0xE0:
        return 1
    return 2 if byte < 0xF0 else 3


def shortest_completion(matcher: GrammarMatcher, scanner: JsonScanner, vocabulary: TokenVocabulary, *, limit: int) -> bytes | None:
    """Bytes that finish the JSON from `matcher`'s state, or None when none was found within `limit` bytes.

    Works on a fork of the matcher, so the caller's state is untouched. The search never looks past
    `SEARCH_LIMIT` bytes. Candidates are only checked; a chosen piece is taken unless it finishes the answer
    (taking the piece that ends the grammar costs llguidance 1.9 about ten times a plain step), which is asked
    only where the answer can end.
    """
    limit = min(limit, SEARCH_LIMIT)
    if matcher.accepting:
        return b""
    probe = matcher.fork()
    scanner = scanner.copy()
    written = bytearray()
    last_used: dict[bytes, int] = {}
    while len(written) <= limit:
        piece = _next_piece(probe, scanner, vocabulary, last_used, step=len(written))
        if piece is None:
            return None
        written += piece
        scanner.feed(piece)
        if scanner.at_top_level() and probe.completes(piece):
            return bytes(written) if len(written) <= limit else None
        probe.accept_bytes(piece)
    return None


def _next_piece(
    matcher: GrammarMatcher, scanner: JsonScanner, vocabulary: TokenVocabulary, last_used: dict[bytes, int], *, step: int
) -> bytes | None:
    """The next piece of the completion: a run the grammar forces, else the first ranked candidate it accepts,
    else its shortest allowed token; None when it allows no token at all."""
    forced = matcher.forced_bytes()
    if forced and matcher.allows(forced):
        return forced
    if scanner.in_plain_string():
        piece = _finish_string(matcher, last_used, step=step)
    else:
        piece = next((candidate for candidate in scanner.candidates() if matcher.allows(candidate)), b"")
    return piece or _cheapest_allowed_token(matcher, vocabulary)


def _finish_string(matcher: GrammarMatcher, last_used: dict[bytes, int], *, step: int) -> bytes:
    """Inside a string: close it; else a filler character after which it closes; else one filler.

    The filler used least recently goes first, so a `pattern` or `format` that needs a particular character
    (the `@` of an email, the `-` of a date) gets it instead of an endless run of the first filler.
    """
    if matcher.allows(b'"'):
        return b'"'
    for filler in _STRING_FILLERS:
        if matcher.allows(filler + b'"'):
            return filler + b'"'
    for filler in sorted(_STRING_FILLERS, key=lambda filler: last_used.get(filler, -1)):
        if matcher.allows(filler):
            last_used[filler] = step
            return filler
    return b""


def _cheapest_allowed_token(matcher: GrammarMatcher, vocabulary: TokenVocabulary) -> bytes | None:
    allowed_ids = np.flatnonzero(matcher.allowed() & vocabulary.usable)
    if not len(allowed_ids):
        return None
    return vocabulary.decoded[int(allowed_ids[np.argmin(vocabulary.lengths[allowed_ids])])]


def completion_tokens(matcher: GrammarMatcher, completion: bytes, vocabulary: TokenVocabulary) -> list[int] | None:
    """Write `completion` as tokens the matcher accepts, longest matching token first; advances `matcher`."""
    tokens: list[int] = []
    position = 0
    while position < len(completion):
        for length in range(min(vocabulary.longest, len(completion) - position), 0, -1):
            token_id = vocabulary.by_bytes.get(completion[position : position + length])
            if token_id is not None and matcher.accept_token(token_id):
                tokens.append(token_id)
                position += length
                break
        else:
            return None
    return tokens
