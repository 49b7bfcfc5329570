"""SDXL base 1.0 and refiner 1.0 at full size, from their published config values, with random weights.

The values are those of stabilityai/stable-diffusion-xl-base-1.0 and -refiner-1.0 (unet, text encoders, VAE,
scheduler), written here so the GPU harness can time the real architectures without downloading weights.
`write_full_sdxl` saves them in the same `base/` + `refiner/` layout as the tiny builder
(services/illustrate/tiny.py), so both sizes load through the same `from_pretrained` path as real checkpoints.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

BASE_UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
}

REFINER_UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (384, 768, 1536, 1536),
    "layers_per_block": 2,
    "transformer_layers_per_block": 4,
    "attention_head_dim": (6, 12, 24, 24),
    "cross_attention_dim": 1280,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2560,
    "norm_num_groups": 32,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
}

# CLIP ViT-L/14 text encoder (SDXL's first) and OpenCLIP ViT-bigG/14 text encoder with projection (its second).
CLIP_L_TEXT: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 768,
    "layer_norm_eps": 1e-5, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
OPENCLIP_BIGG_TEXT: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
    "num_attention_heads": 20, "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 1280,
    "layer_norm_eps": 1e-5, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}

SDXL_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}

SDXL_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "leading", "interpolation_type": "linear",
    "use_karras_sigmas": False,
}

# Published figures this harness reports against (see docs/models.md): 40 steps, hand-off at 0.8, 1024².
FULL_SIZE_IMAGE_TFLOP = 560.0
FULL_SIZE_UNET_PARAMETERS = {"base": 2.567e9, "refiner": 2.260e9}


def unet(config: dict[str, Any]):  # -> UNet2DConditionModel
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config)


def text_encoders():  # -> tuple[CLIPTextModel, CLIPTextModelWithProjection]
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    return CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT)).eval(), CLIPTextModelWithProjection(CLIPTextConfig(**OPENCLIP_BIGG_TEXT)).eval()


def vae():  # -> AutoencoderKL
    from diffusers import AutoencoderKL

    return AutoencoderKL(**SDXL_VAE)


def scheduler():  # -> EulerDiscreteScheduler
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(**SDXL_SCHEDULER)


def clip_tokenizer(folder: Path):  # -> CLIPTokenizer
    """A CLIP tokenizer without merges: every byte is a token. Prompts are padded to 77 tokens either way, so the
    text encoders do exactly the work they do with the real vocabulary."""
    from transformers import CLIPTokenizer

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    characters = [chr(code) for code in printable] + [chr(256 + index) for index in range(256 - len(printable))]
    tokens = characters + [character + "</w>" for character in characters] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


def write_full_sdxl(folder: Path, *, device: str, dtype: Any) -> Path:
    """Build both pipelines with random weights on `device` (fast initialisation), cast to `dtype`, and save
    them as `folder/base` and `folder/refiner`; returns `folder`. Already written folders are reused."""
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    folder = Path(folder)
    if (folder / "refiner" / "model_index.json").is_file():
        return folder
    tokenizer = clip_tokenizer(folder / ".tokenizer")
    torch.manual_seed(0)
    with torch.device(device):
        encoder, encoder_2 = (module.to(dtype) for module in text_encoders())
        autoencoder = vae().to(dtype)
        base_unet = unet(BASE_UNET).to(dtype)
    base = StableDiffusionXLPipeline(
        vae=autoencoder, text_encoder=encoder, text_encoder_2=encoder_2, tokenizer=tokenizer, tokenizer_2=tokenizer,
        unet=base_unet, scheduler=scheduler(), add_watermarker=False,
    )
    base.save_pretrained(folder / "base")
    del base, base_unet, encoder
    with torch.device(device):
        refiner_unet = unet(REFINER_UNET).to(dtype)
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=autoencoder, text_encoder=None, text_encoder_2=encoder_2, tokenizer=None, tokenizer_2=tokenizer,
        unet=refiner_unet, scheduler=scheduler(), requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
        add_watermarker=False,
    )
    refiner.save_pretrained(folder / "refiner")
    del refiner, refiner_unet, encoder_2, autoencoder
    shutil.rmtree(folder / ".tokenizer", ignore_errors=True)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return folder
