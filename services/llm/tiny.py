"""A random tiny chat model, built by code and saved like real weights, for tests and offline demos.

It loads back through the same `AutoModelForCausalLM` / `AutoTokenizer` path as a real checkpoint, so the
chat template, the tokenizer, constrained decoding and streaming all run for real; only the words are
gibberish. The tokenizer is byte-level, so any text (emoji, Hangul, Arabic) encodes without unknown tokens.
"""

from __future__ import annotations

from pathlib import Path

from shared.atomic_build import build_once
from shared.tiny_tokenizer import train_byte_level_bpe

BOS_TOKEN = "<s>"
PAD_TOKEN = "<pad>"
END_OF_TEXT = "<|endoftext|>"
MESSAGE_START = "<|im_start|>"
MESSAGE_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, END_OF_TEXT, MESSAGE_START, MESSAGE_END]
SEED = 20240611
TOKENIZER_VOCAB_SIZE = 400
# The model's vocabulary is padded past the tokenizer's, as many real checkpoints do, so the service's
# handling of logits that belong to no token is exercised by the tests.
MODEL_VOCAB_MULTIPLE = 64

# ChatML, as used by Qwen and others. A list of text parts is joined into one string.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TRAINING_SENTENCES = [
    "Once upon a time a small cat lived in a red house near the sea.",
    "The brave girl and her dog walked through the quiet forest at night.",
    '{"title": "The Lighthouse", "characters": [{"name": "Mia", "description": "a girl"}], "pages": []}',
    "Write a short story for children about friendship, courage and the moon.",
    "A watercolor illustration of a fox reading a book under a tree, soft light.",
    "Translate the following text into French, Korean and Arabic.",
]

_MARKER = "config.json"


def build_tiny_chat_model(folder: Path) -> Path:
    """Build the tiny chat model into `folder` unless it is already there; returns `folder`.

    Built once, atomically (`shared.atomic_build.build_once`).
    """
    return build_once(folder, marker=_MARKER, write=_write_tiny_chat_model, what="tiny chat model")


def _write_tiny_chat_model(folder: Path) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = _train_tokenizer()
    token_count = len(tokenizer)
    vocab_size = -(-token_count // MODEL_VOCAB_MULTIPLE) * MODEL_VOCAB_MULTIPLE
    stop_ids = [tokenizer.convert_tokens_to_ids(MESSAGE_END), tokenizer.convert_tokens_to_ids(END_OF_TEXT)]
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stop_ids,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen2ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _train_tokenizer():  # -> PreTrainedTokenizerFast
    from transformers import PreTrainedTokenizerFast

    backend = train_byte_level_bpe(TRAINING_SENTENCES, vocab_size=TOKENIZER_VOCAB_SIZE, special_tokens=SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=MESSAGE_END,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[END_OF_TEXT, MESSAGE_START],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
    )
