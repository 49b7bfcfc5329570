"""Tiny, random stand-ins for the LLaVA families the cpu and gpu profiles name, saved like the published checkpoints.

Each stand-in has its family's real config, model, image-processor, processor and tokenizer classes, the real
config values that change the wiring (feature layer and select strategy, image-token count, any-resolution grid,
special tokens, end-of-turn ids) and the real chat template text; only the sizes are tiny and the weights random.
The caption service loads one through the same `from_pretrained` path as the real weights, so a wiring error
(a wrong model class, an image-token count that does not match the vision features, a prompt format the
template does not produce) shows up in a test instead of on a first user's machine.

- `build_llava_interleave_qwen`: `llava-hf/llava-interleave-qwen-0.5b-hf` (cpu profile): LLaVA with a SigLIP
  tower whose every patch is an image token ("full"), a Qwen2 text model and a ChatML-style template.
- `build_llava_next_vicuna`: `llava-hf/llava-v1.6-vicuna-7b-hf` (LLaVA-1.6 / LLaVA-NeXT): any-resolution tiles
  of a CLIP tower, a Llama (Vicuna) text model and tokenizer, and the "USER: ... ASSISTANT:" template.
"""

from __future__ import annotations

from pathlib import Path

from services.caption.tiny import TRAINING_SENTENCES
from shared.atomic_build import build_once
from shared.tiny_tokenizer import llama_tokenizer, qwen2_tokenizer, token_id

IMAGE_TOKEN = "<image>"
END_OF_TEXT, MESSAGE_START, MESSAGE_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
PAD_TOKEN = "<pad>"
SEED = 20240715
# Real checkpoints pad the embedding matrix past the tokenizer (152000 rows for 151647 tokens; 32064 for 32002).
VOCAB_MULTIPLE = 64

# llava-interleave: SigLIP-so400m at 384 px in patches of 14 gives 27 × 27 = 729 image tokens (384 is not a
# multiple of 14, so the processor floors); 36 px in patches of 8 floors the same way, to 4 × 4 = 16.
SIGLIP_IMAGE_SIZE = 36
SIGLIP_PATCH_SIZE = 8
# The Qwen1.5 vocabulary's added tokens, in id order (151643–151646 in the real one).
INTERLEAVE_ADDED_TOKENS = [END_OF_TEXT, MESSAGE_START, MESSAGE_END, IMAGE_TOKEN]

# LLaVA-1.6: CLIP ViT-L/14 at 336 px, and the grid of tile layouts the any-resolution processor picks from,
# [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]], scaled to 32-pixel tiles.
NEXT_TILE_SIZE = 32
NEXT_PATCH_SIZE = 8
NEXT_GRID_PINPOINTS = [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]

# Verbatim from https://huggingface.co/llava-hf/llava-interleave-qwen-0.5b-hf/blob/1abeb3a994bf01d53d492318a1c9517950cd9f1b/chat_template.json
INTERLEAVE_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Verbatim from https://huggingface.co/llava-hf/llava-v1.6-vicuna-7b-hf/blob/30f8c4fe610ab808d4d3612c01456be5f725184f/chat_template.json
VICUNA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

_MARKER = "config.json"


def build_llava_interleave_qwen(folder: Path) -> Path:
    """Build the llava-interleave-qwen stand-in into `folder` unless it is there; returns `folder`."""
    return build_once(folder, marker=_MARKER, write=_write_llava_interleave_qwen, what="llava-interleave-qwen stand-in")


def build_llava_next_vicuna(folder: Path) -> Path:
    """Build the LLaVA-1.6 (Vicuna) stand-in into `folder` unless it is there; returns `folder`."""
    return build_once(folder, marker=_MARKER, write=_write_llava_next_vicuna, what="LLaVA-1.6 stand-in")


def _write_llava_interleave_qwen(folder: Path) -> None:
    from transformers import (
        GenerationConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        Qwen2Config,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    tokenizer = qwen2_tokenizer(
        TRAINING_SENTENCES, vocab_size=300, added_tokens=INTERLEAVE_ADDED_TOKENS,
        special_tokens=INTERLEAVE_ADDED_TOKENS, eos_token=MESSAGE_END, pad_token=END_OF_TEXT, model_max_length=32768,
    )
    end_of_text, message_end = token_id(tokenizer, END_OF_TEXT), token_id(tokenizer, MESSAGE_END)
    text_config = Qwen2Config(
        vocab_size=_padded(len(tokenizer)),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=end_of_text,
        eos_token_id=message_end,
    )
    vision_config = SiglipVisionConfig(
        image_size=SIGLIP_IMAGE_SIZE,
        patch_size=SIGLIP_PATCH_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
        vision_use_head=False,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=token_id(tokenizer, IMAGE_TOKEN),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    model = _seeded(LlavaForConditionalGeneration, config)
    model.generation_config = GenerationConfig(bos_token_id=end_of_text, eos_token_id=message_end)
    image_processor = SiglipImageProcessor(
        size={"height": SIGLIP_IMAGE_SIZE, "width": SIGLIP_IMAGE_SIZE}, resample=3,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=SIGLIP_PATCH_SIZE,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=0,
        image_token=IMAGE_TOKEN,
        chat_template=INTERLEAVE_CHAT_TEMPLATE,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def _write_llava_next_vicuna(folder: Path) -> None:
    from transformers import (
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    tokenizer = llama_tokenizer(
        [*TRAINING_SENTENCES, "USER: ASSISTANT:"], vocab_size=400, special_tokens=[IMAGE_TOKEN], pad_token=PAD_TOKEN,
        model_max_length=4096,
    )
    text_config = LlamaConfig(
        vocab_size=_padded(len(tokenizer)),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = CLIPVisionConfig(
        image_size=NEXT_TILE_SIZE,
        patch_size=NEXT_PATCH_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
    )
    config = LlavaNextConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_grid_pinpoints=NEXT_GRID_PINPOINTS,
        image_token_index=token_id(tokenizer, IMAGE_TOKEN),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )
    model = _seeded(LlavaNextForConditionalGeneration, config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": NEXT_TILE_SIZE},
        crop_size={"height": NEXT_TILE_SIZE, "width": NEXT_TILE_SIZE},
        image_grid_pinpoints=NEXT_GRID_PINPOINTS,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=NEXT_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
        chat_template=VICUNA_CHAT_TEMPLATE,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def _seeded(model_class, config):  # -> PreTrainedModel, in eval mode
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return model_class(config).eval()


def _padded(token_count: int) -> int:
    return -(-token_count // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
