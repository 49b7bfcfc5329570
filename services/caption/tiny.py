"""A random tiny LLaVA, built by code and saved like real weights, for tests and offline demos.

It is loaded back through the same `from_pretrained` path as a real checkpoint, so the service, its
processor handling and its chat template run for real; only the words it writes are gibberish.
"""

from __future__ import annotations

from pathlib import Path

from shared.atomic_build import build_once
from shared.tiny_tokenizer import train_byte_level_bpe

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<unk>", "<pad>", "<s>", "</s>", IMAGE_TOKEN]
IMAGE_SIZE = 32
PATCH_SIZE = 8
SEED = 20240601

# The LLaVA 1.5 template: images first, then the text, then "ASSISTANT:" to start the answer.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

TRAINING_SENTENCES = [
    "A small cat sits on a warm red blanket near the window.",
    "The happy dog runs across a green meadow under a bright blue sky.",
    "Two children build a tall sandcastle on the golden beach at sunset.",
    "An old lighthouse stands on the rocks while gentle waves roll in.",
    "A curious fox peeks out from behind a mossy tree in the quiet forest.",
    "Colourful balloons float above the busy market square on a sunny morning.",
    "Describe the people, animals, objects, setting, colours and mood of this picture for a storybook.",
]

_MARKER = "config.json"


def build_tiny_llava(folder: Path) -> Path:
    """Build the tiny LLaVA into `folder` unless it is already there; returns `folder`.

    Built once, atomically (`shared.atomic_build.build_once`).
    """
    return build_once(folder, marker=_MARKER, write=_write_tiny_llava, what="tiny caption model")


def _write_tiny_llava(folder: Path) -> None:
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = _train_tokenizer()
    text_config = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = CLIPVisionConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def _train_tokenizer():  # -> PreTrainedTokenizerFast
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    backend = train_byte_level_bpe(TRAINING_SENTENCES, vocab_size=300, special_tokens=SPECIAL_TOKENS, unk_token="<unk>")
    bos_id = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="left",
    )
