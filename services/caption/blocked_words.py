"""Turn `FABULA_BLOCKED_WORDS` into the token sequences a caption model may never generate.

`generate(bad_words_ids=...)` only blocks the exact token sequences it is given, and a model can spell one word
with many token sequences ("Ġcat", "Ġc"+"at", "Ġ"+"c"+"a"+"t", ...). So every spelling of every case and
spacing variant of a word is listed, built once when the model loads. A blocked word is then refused as a
whole word wherever it starts a token, which is where a word starts in byte-level and SentencePiece vocabularies.
"""

from __future__ import annotations

from functools import cache
from typing import Protocol

MAX_SPELLINGS_PER_VARIANT = 512


class Tokenizer(Protocol):
    def tokenize(self, text: str) -> list[str]: ...

    def get_vocab(self) -> dict[str, int]: ...


def word_variants(word: str) -> list[str]:
    """The cases and spacings under which a word shows up in running text."""
    cased = dict.fromkeys([word, word.lower(), word.capitalize(), word.upper(), word.title()])
    return [spaced for form in cased for spaced in (" " + form, form)]


def token_spellings(text: str, vocabulary: dict[str, int], *, limit: int = MAX_SPELLINGS_PER_VARIANT) -> list[list[int]]:
    """Every way (up to `limit`, longest tokens first) to write `text` as a sequence of vocabulary tokens.

    `text` is in the tokenizer's own alphabet (e.g. "Ġcat" for byte-level BPE, "▁cat" for SentencePiece).
    """
    longest = max((len(token) for token in vocabulary), default=0)

    @cache
    def spell_from(start: int) -> tuple[tuple[int, ...], ...]:
        if start == len(text):
            return ((),)
        spellings: list[tuple[int, ...]] = []
        for end in range(min(len(text), start + longest), start, -1):
            token_id = vocabulary.get(text[start:end])
            if token_id is None:
                continue
            for rest in spell_from(end):
                spellings.append((token_id, *rest))
                if len(spellings) >= limit:
                    return tuple(spellings)
        return tuple(spellings)

    return [list(spelling) for spelling in spell_from(0)]


def blocked_token_sequences(words: list[str], tokenizer: Tokenizer) -> list[list[int]]:
    """All token sequences that would write one of `words`; empty when no word is blocked."""
    vocabulary = tokenizer.get_vocab()
    sequences: dict[tuple[int, ...], None] = {}
    for word in words:
        if not word.strip():
            continue
        for variant in word_variants(word.strip()):
            pieces = tokenizer.tokenize(variant)
            if not pieces:
                continue
            canonical = [vocabulary[piece] for piece in pieces if piece in vocabulary]
            if len(canonical) == len(pieces):
                sequences[tuple(canonical)] = None
            for spelling in token_spellings("".join(pieces), vocabulary):
                sequences[tuple(spelling)] = None
    return [list(sequence) for sequence in sequences]
