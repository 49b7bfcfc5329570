"""A random tiny SDXL base and refiner, built by code and saved like real weights, for tests and offline demos.

The configs are diffusers' own test components (see docs/models.md). Both pipelines are written with
`save_pretrained` and loaded back through the same `from_pretrained` path as real checkpoints, so the
service's hand-off, batching and decoding run for real; only the pictures are noise. The tokenizer reads common
prompt words as one token each, as CLIP does, so prompt lengths (and the service's window warnings) come out
roughly as with real weights. Beside them sit a tiny IP-Adapter for the base (`tiny_likeness`) and a tiny image
safety classifier (`tiny_safety`), each in the layout its published counterpart has.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import string
import uuid
from pathlib import Path

from shared.atomic_build import build_once
from shared.clip_words import CLIP_COMMON_WORDS

logger = logging.getLogger(__name__)

SEED = 20240602
TEXT_HIDDEN_SIZE = 32
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
# Words that become single tokens, so the tiny profile counts a picture prompt's tokens about as SDXL's tokenizers
# do: the common words of picture prompts (each one token in CLIP's vocabulary too), the style presets and their
# negatives, and the story templates. Any other word falls into letter pairs (CLIP: pieces of ~3-4 letters).
VOCABULARY_WORDS = [
    *CLIP_COMMON_WORDS,
    # the style presets' and negatives' own words, and the story templates'
    *"""
    washes watermark deformed halftone expressive cel claymation plasticine figures miniature set bit limited crisp smooth
    gradients natural shallow depth colouring layered cut collage craft cover illustrated storybook lighthouse treehouse
    puddle raincoat cottage
    """.split(),
]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]  # CLIP splits these off a word and reads each as one token
# Bump when the tiny models change (here: the likeness adapter and the safety classifier); a cache folder without
# this version's marker is rebuilt.
BUILD_VERSION = 3

BASE_FOLDER = "base"
REFINER_FOLDER = "refiner"
LIKENESS_FOLDER = "ip-adapter"
SAFETY_FOLDER = "safety-checker"
_MARKER = Path(f"tiny-sdxl-v{BUILD_VERSION}.json")


def build_tiny_sdxl(folder: Path) -> Path:
    """Build the tiny base into `folder/base`, the refiner into `folder/refiner`, the likeness adapter into
    `folder/ip-adapter` and the safety classifier into `folder/safety-checker` unless present; returns `folder`.

    Built once, atomically (`shared.atomic_build.build_once`). A folder built by an older version of this code
    (no `_MARKER`) is moved aside and deleted first, so the new models take its place.
    """
    folder = Path(folder)
    if folder.is_dir() and not (folder / _MARKER).is_file():
        _retire(folder)
    return build_once(folder, marker=_MARKER, write=_write_tiny_sdxl, what="tiny illustration models")


def _retire(folder: Path) -> None:
    aside = folder.with_name(f".{folder.name}-retired-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(folder, aside)
    except FileNotFoundError:
        return  # another process retired it first
    logger.info("rebuilding the tiny illustration models: the cached ones are an older build", extra={"fields": {"folder": str(folder)}})
    shutil.rmtree(aside, ignore_errors=True)


def _write_tiny_sdxl(folder: Path) -> None:
    import torch
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_img2img import StableDiffusionXLImg2ImgPipeline

    from services.illustrate.tiny_likeness import write_tiny_ip_adapter
    from services.illustrate.tiny_safety import write_tiny_safety_checker

    tokenizer = _clip_tokenizer(folder / ".vocabulary")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        text_encoder, text_encoder_2 = _text_encoders(tokenizer)
        vae = _vae()
        # Base: both encoders (32 + 32 = 64 wide); time ids 6 × 8 plus the pooled 32 = 80.
        base_unet = _unet(cross_attention_dim=64, projection_class_embeddings_input_dim=80)
        # Refiner: the second encoder only (32 wide); time ids with aesthetic score 5 × 8 plus 32 = 72.
        refiner_unet = _unet(cross_attention_dim=32, projection_class_embeddings_input_dim=72)
        write_tiny_ip_adapter(folder / LIKENESS_FOLDER, base_unet)
        write_tiny_safety_checker(folder / SAFETY_FOLDER)

    base = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=base_unet,
        scheduler=_scheduler(),
        add_watermarker=False,
    )
    # diffusers 0.42 annotates the first text encoder and tokenizer as required, yet an SDXL refiner has neither
    # (stabilityai's refiner checkpoint lists both as null); the pipeline runs on the second ones.
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=vae,
        text_encoder=None, tokenizer=None,  # type: ignore[arg-type]
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer,
        unet=refiner_unet,
        scheduler=_scheduler(),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
        add_watermarker=False,
    )
    base.save_pretrained(folder / BASE_FOLDER)
    refiner.save_pretrained(folder / REFINER_FOLDER)
    shutil.rmtree(folder / ".vocabulary", ignore_errors=True)
    (folder / _MARKER).write_text(json.dumps({"version": BUILD_VERSION, "vocabulary": len(tokenizer)}), encoding="utf-8")


def _unet(*, cross_attention_dim: int, projection_class_embeddings_input_dim: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=projection_class_embeddings_input_dim,
        cross_attention_dim=cross_attention_dim,
    )


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=128,
    )


def _scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )


def _text_encoders(tokenizer):  # -> tuple[CLIPTextModel, CLIPTextModelWithProjection]
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=TEXT_HIDDEN_SIZE,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=len(tokenizer),
        hidden_act="gelu",
        projection_dim=32,
    )
    return CLIPTextModel(config).eval(), CLIPTextModelWithProjection(config).eval()


def _clip_tokenizer(vocabulary_folder: Path):  # -> CLIPTokenizer
    """A CLIP tokenizer from a hand-written `vocab.json` and `merges.txt` (no hub, no training)."""
    from transformers import CLIPTokenizer

    vocabulary, merges = _vocabulary_and_merges()
    vocabulary_folder.mkdir(parents=True, exist_ok=True)
    (vocabulary_folder / "vocab.json").write_text(json.dumps(vocabulary), encoding="utf-8")
    (vocabulary_folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(vocabulary_folder, model_max_length=77)


def _vocabulary_and_merges() -> tuple[dict[str, int], list[str]]:
    """The 256 byte-characters (bare and word-final), the merges that make each of VOCABULARY_WORDS and
    CONTRACTIONS one token, every lower-case letter pair, then the two specials.

    A word's merges are found by running the BPE built so far on it and joining its first two pieces until it is
    one token; each new merge ranks after all earlier ones, so it never changes how an earlier word splits. Both
    halves of every merge are tokens already, and every merge's result is added to the vocabulary.
    """
    byte_characters = list(_bytes_to_unicode().values())
    tokens = dict.fromkeys(byte_characters + [character + END_OF_WORD for character in byte_characters])
    ranks: dict[tuple[str, str], int] = {}

    def add_merge(left: str, right: str) -> None:
        if (left, right) not in ranks:
            ranks[left, right] = len(ranks)
            tokens.setdefault(left + right)

    for word in [*VOCABULARY_WORDS, *CONTRACTIONS]:
        while len(pieces := _byte_pair_split(word, ranks)) > 1:
            add_merge(pieces[0], pieces[1])
    for left in string.ascii_lowercase:
        for right in string.ascii_lowercase:
            add_merge(left, right)
            add_merge(left, right + END_OF_WORD)
    tokens.update(dict.fromkeys([START_TOKEN, END_TOKEN]))
    return {token: index for index, token in enumerate(tokens)}, [f"{left} {right}" for left, right in ranks]


def _byte_pair_split(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """`word` (printable ASCII) split as CLIP's BPE splits it: the lowest-ranked adjacent pair merges first."""
    pieces = [*word[:-1], word[-1] + END_OF_WORD]
    while len(pieces) > 1:
        known = [pair for pair in itertools.pairwise(pieces) if pair in ranks]
        if not known:
            break
        pair = min(known, key=ranks.__getitem__)
        merged: list[str] = []
        index = 0
        while index < len(pieces):
            if index + 1 < len(pieces) and (pieces[index], pieces[index + 1]) == pair:
                merged.append(pieces[index] + pieces[index + 1])
                index += 2
            else:
                merged.append(pieces[index])
                index += 1
        pieces = merged
    return pieces


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in characters), strict=True))
