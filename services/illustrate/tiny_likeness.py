"""A random tiny IP-Adapter for the tiny SDXL base, written in the folder layout of h94/IP-Adapter.

The image encoder is a tiny `CLIPVisionModelWithProjection` (with its `CLIPImageProcessor`) saved with
`save_pretrained`; the adapter is one safetensors file of `image_proj.*` (diffusers' `ImageProjection`: the image
embedding to four extra cross-attention tokens) and `ip_adapter.<n>.to_k_ip/to_v_ip` weights (the extra key and
value projections of every cross-attention layer, numbered as the published checkpoints number them). Its shapes
are read off the base UNet, so it loads through the same `load_ip_adapter` call as the published weights, and
its random weights still make the reference change the picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.illustrate.likeness_files import ADAPTER_FILES

IMAGE_SIZE = 32
EMBED_DIM = 32
IMAGE_TOKENS = 4
PATCH_WEIGHT_STD = 0.2


def write_tiny_ip_adapter(folder: Path, unet: Any) -> None:
    """Write the encoder and the adapter for `unet` under `folder` (seed the torch RNG first for a fixed build)."""
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, projection_dim=EMBED_DIM,
        )
    ).eval()
    let_the_picture_decide(encoder.vision_model)
    encoder_folder = folder / ADAPTER_FILES.image_encoder_folder
    encoder.save_pretrained(encoder_folder)
    CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    ).save_pretrained(encoder_folder)

    weights = {f"image_proj.{name}": tensor for name, tensor in _image_projection(unet).items()}
    weights.update({f"ip_adapter.{name}": tensor for name, tensor in _ip_attention(unet).items()})
    adapter_file = folder / ADAPTER_FILES.subfolder / ADAPTER_FILES.weight_name
    adapter_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in weights.items()}, str(adapter_file))


def let_the_picture_decide(vision_model: Any) -> None:
    """Make a random CLIP vision tower's embedding depend on the picture, as a trained one's does.

    At random initialisation the class token and the position embeddings outweigh the patches, so every picture
    lands within a few degrees of every other (cosine similarity ~0.97 between unrelated noise pictures). With
    those zeroed and a wider patch projection, unrelated pictures fall ~0.6 apart and a picture stays closest to
    itself, which the likeness and safety stand-ins rely on.
    """
    import torch

    embeddings = vision_model.embeddings  # a transformers `CLIPVisionModel`
    with torch.no_grad():
        embeddings.class_embedding.zero_()
        embeddings.position_embedding.weight.zero_()
        embeddings.patch_embedding.weight.normal_(0.0, PATCH_WEIGHT_STD)


def _image_projection(unet: Any) -> dict:
    from diffusers.models.embeddings import ImageProjection

    projection = ImageProjection(
        image_embed_dim=EMBED_DIM, cross_attention_dim=unet.config.cross_attention_dim, num_image_text_embeds=IMAGE_TOKENS
    )
    state = projection.state_dict()
    # The published checkpoints name the linear layer `proj`; diffusers renames it to `image_embeds` on load.
    return {"proj.weight": state["image_embeds.weight"], "proj.bias": state["image_embeds.bias"],
            "norm.weight": state["norm.weight"], "norm.bias": state["norm.bias"]}


def _ip_attention(unet: Any) -> dict:
    """Key and value projections for the image tokens of every cross-attention layer.

    The published numbering counts every attention processor of the UNet in order, self-attention (even
    numbers) and cross-attention (odd) alike, and only the cross-attention ones carry weights.
    """
    import torch

    config = unet.config
    weights: dict = {}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        hidden_size = _hidden_size(name, list(config.block_out_channels))
        for projection in ("to_k_ip", "to_v_ip"):
            layer = torch.nn.Linear(config.cross_attention_dim, hidden_size, bias=False)
            weights[f"{key_id}.{projection}.weight"] = layer.weight.detach().clone()
        key_id += 2
    return weights


def _hidden_size(processor_name: str, block_out_channels: list[int]) -> int:
    if processor_name.startswith("mid_block"):
        return block_out_channels[-1]
    block = int(processor_name.split(".")[1])
    if processor_name.startswith("up_blocks"):
        return list(reversed(block_out_channels))[block]
    return block_out_channels[block]
