"""Tiny tokenizers trained in a blink on a handful of sentences, for the tiny models and the model families' tiny stand-ins.

Two kinds, as the real checkpoints have them:
- byte-level BPE (GPT-2, Qwen): every byte is in the alphabet, so any text (emoji, Hangul, Arabic) encodes
  without unknown tokens; `qwen2_tokenizer` wraps one in transformers' own `Qwen2Tokenizer`;
- SentencePiece-style BPE (Llama, Vicuna, Mistral): words start with "▁" and a character never seen in training
  falls back to its `<0xNN>` byte tokens; `llama_tokenizer` wraps one in transformers' own `LlamaTokenizer`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import LlamaTokenizer, PreTrainedTokenizerBase, Qwen2Tokenizer

LLAMA_UNKNOWN, LLAMA_BOS, LLAMA_EOS = "<unk>", "<s>", "</s>"
BYTE_TOKENS = [f"<0x{byte:02X}>" for byte in range(256)]


def train_byte_level_bpe(
    sentences: Iterable[str], *, vocab_size: int, special_tokens: Sequence[str] = (), unk_token: str | None = None
) -> Tokenizer:
    """A byte-level BPE backend; `special_tokens` take the first ids, in order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE(unk_token=unk_token) if unk_token else models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(sentences, trainer=trainer)
    return backend


def qwen2_tokenizer(
    sentences: Iterable[str],
    *,
    vocab_size: int,
    added_tokens: Sequence[str],
    special_tokens: Sequence[str],
    eos_token: str,
    pad_token: str,
    **options: Any,
) -> Qwen2Tokenizer:
    """A `Qwen2Tokenizer` on a tiny byte-level vocabulary.

    As in Qwen's own vocabularies, `added_tokens` get the ids right after the learned ones, in order (Qwen2.5:
    `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, ...), and none is ever split; those in `special_tokens` are also
    special (skipped when decoding with `skip_special_tokens`). There is no BOS and no unknown token. `options` go
    to the tokenizer (`chat_template`, `model_max_length`, `padding_side`, ...).
    """
    from transformers import Qwen2Tokenizer

    vocabulary, merges = _vocabulary_and_merges(train_byte_level_bpe(sentences, vocab_size=vocab_size))
    for token in added_tokens:
        vocabulary.setdefault(token, len(vocabulary))
    # transformers 5.25 annotates `merges` as `str | list[str]` and `unk_token` as `str`, yet its BPE backend takes
    # merge pairs (not "a b" strings) and Qwen's own vocabularies have no unknown token.
    tokenizer = Qwen2Tokenizer(
        vocab=vocabulary, merges=merges, unk_token=None, bos_token=None, eos_token=eos_token, pad_token=pad_token,  # type: ignore[arg-type]
        **options,
    )
    # transformers 5 ignores an `additional_special_tokens` argument to the constructor; this registers them.
    extra = [token for token in special_tokens if token not in (eos_token, pad_token)]
    tokenizer.add_special_tokens({"additional_special_tokens": extra})
    tokenizer.add_tokens([token for token in added_tokens if token not in special_tokens])  # never split, not special
    return tokenizer


def llama_tokenizer(
    sentences: Iterable[str],
    *,
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    pad_token: str | None = None,
    **options: Any,
) -> LlamaTokenizer:
    """A `LlamaTokenizer` (SentencePiece-style BPE with byte fallback) on a tiny vocabulary.

    Like Llama's: `<unk>` 0, `<s>` 1, `</s>` 2, the 256 byte tokens 3–258, then the learned pieces; BOS is added
    to every encoding. `special_tokens` (e.g. `<image>`) and `pad_token` come after. `options` go to the tokenizer.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    backend = Tokenizer(models.BPE(unk_token=LLAMA_UNKNOWN, byte_fallback=True))
    # Trained word by word (split=True) so that pieces never span words; LlamaTokenizer itself encodes unsplit.
    # The byte tokens are listed as trainer specials only to pin their ids: in LlamaTokenizer they are plain pieces.
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[LLAMA_UNKNOWN, LLAMA_BOS, LLAMA_EOS, *BYTE_TOKENS], show_progress=False
    )
    backend.train_from_iterator(sentences, trainer=trainer)
    vocabulary, merges = _vocabulary_and_merges(backend)
    tokenizer = LlamaTokenizer(
        vocab=vocabulary, merges=merges, unk_token=LLAMA_UNKNOWN, bos_token=LLAMA_BOS, eos_token=LLAMA_EOS,
        add_bos_token=True, **options,
    )
    extra: dict[str, Any] = {"additional_special_tokens": list(special_tokens)}
    if pad_token is not None:
        extra["pad_token"] = pad_token
    tokenizer.add_special_tokens(extra)
    return tokenizer


def token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    """The id of one token (transformers types `convert_tokens_to_ids` for a token and a list of them at once)."""
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise TypeError(f"expected one id for {token!r}, got {found!r}")
    return found


def _vocabulary_and_merges(backend: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ", 1)) for merge in model["merges"]]
    return dict(model["vocab"]), merges
