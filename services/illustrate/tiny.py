"""A random tiny SDXL base and refiner, built by code and saved like real weights, for tests and offline demos.

The configs are diffusers' own test components (see MODEL_NOTES.md). Both pipelines are written with
`save_pretrained` and loaded back through the same `from_pretrained` path as real checkpoints, so the
service's hand-off, batching and decoding run for real; only the pictures are noise. The tokenizer reads common
prompt words as one token each, as CLIP does, so prompt lengths (and the service's window warnings) come out
roughly as with real weights.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import string
import uuid
from pathlib import Path

from shared.atomic_build import build_once

logger = logging.getLogger(__name__)

SEED = 20240602
TEXT_HIDDEN_SIZE = 32
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
# Words that become single tokens, so the tiny profile counts a picture prompt's tokens about as SDXL's tokenizers
# do: the common words of picture prompts (each one token in CLIP's vocabulary too), the style presets and their
# negatives, and the story templates. Any other word falls into letter pairs (CLIP: pieces of ~3-4 letters).
VOCABULARY_WORDS = """
    a an the and or but of in on at to from with without by for into onto over under above below behind beside
    between near through across around up down out off as is are was were be been being it its his her their our my
    your this that these those there here who whom whose which what where when while after before then than so very
    too also only just not no yes all each every some many much more most few other another one two three four five
    six seven eight nine ten first second third last next new old young little small tiny big large huge tall short
    long wide deep high low round flat full empty open closed bright dark light soft hard warm cold cool hot wet dry
    clean dirty happy sad angry scared brave kind gentle quiet loud calm wild shy curious sleepy tired proud funny
    silly friendly lonely lost hungry magic magical golden silver wooden stone glass paper metal plastic man woman
    boy girl child children baby kid kids friend friends family mother father mom dad mum brother sister grandma
    grandpa grandmother grandfather king queen prince princess knight wizard witch fairy giant pirate farmer teacher
    doctor chef baker sailor astronaut robot monster dragon unicorn ghost cat cats dog dogs puppy kitten fox bear
    bears bird birds owl duck ducks chicken horse pony cow pig sheep goat rabbit bunny mouse mice rat squirrel deer
    wolf lion tiger elephant giraffe zebra monkey frog turtle fish whale dolphin shark octopus crab snake butterfly
    bee ant spider penguin otter hedgehog raccoon panda koala parrot eagle swan tree trees forest woods wood leaf
    leaves flower flowers grass garden park field meadow hill hills mountain mountains river lake sea ocean beach
    sand island rock rocks cave valley desert jungle snow ice rain storm cloud clouds sky sun moon star stars night
    day morning evening sunset sunrise dawn dusk winter spring summer autumn fall weather wind fog mist rainbow fire
    water earth world planet space house home room kitchen bedroom bed table chair door window wall floor roof
    stairs castle tower bridge road street city town village school shop store market farm barn boat ship train car
    bus bike bicycle plane rocket balloon tent cabin library museum church palace camp hat cap coat jacket dress
    shirt skirt pants shorts jeans sweater scarf boots shoes socks gloves glasses crown cape mask bag backpack
    basket box book books ball toy toys kite lamp lantern candle clock map key cup plate bowl bread cake apple
    apples pie tea milk cookie cookies food picnic umbrella blanket pillow rope ladder sword shield wand flag gift
    letter head face eyes eye nose mouth ear ears hair hand hands arm arms leg legs foot feet tail wings wing fur
    feathers smile beard braids curly straight messy freckles red blue green yellow orange purple pink brown black
    white gray grey color colors colour colours striped spotted dotted run runs running walk walks walking jump
    jumps jumping fly flies flying swim swims swimming climb climbs climbing sit sits sitting stand stands standing
    look looks looking see sees watch watches watching read reads reading play plays playing sing sings dance dances
    dancing sleep sleeps sleeping eat eats eating hold holds holding carry carries give gives find finds found make
    makes build builds ride rides riding hug hugs laugh laughs smiling wave waves waving reach reaches hide hides
    chase chases explore explores meet meets share shares help helps opens picture image illustration painting
    drawing sketch art style scene view shot close portrait landscape background foreground detailed detail simple
    bold vivid vibrant pastel muted cinematic realistic photo photograph render cartoon comic anime page panel story
    watercolor watercolour pencil ink line lines outline outlines texture textures shading shadow shadows lighting
    palette pixel pixels studio quality beautiful cute lovely pretty text letters words writing signature blurry
    extra limbs ugly bad cropped frame border logo glowing sparkling shining cozy wearing together toward towards
    inside outside beneath along against past covered filled made like laughing crying lying floating falling rising
    hanging peeking waiting talking dreaming singing afternoon twilight midnight moonlight sunlight candlelight
    daylight starlight corner edge top bottom middle center front back side left right elderly teenage teen toddler
    girls boys women men people crowd group pair couple twins brick fluffy furry shiny sparkly fuzzy thin thick
    heavy broken hidden secret ancient modern busy crowded peaceful cheerful playful colorful colourful pine oak
    willow maple branch branches roots bush bushes vine vines moss mushroom mushrooms pond stream waterfall shore
    cliff path trail fence gate well bench hoodie apron uniform suit belt bow tie necklace ribbon collar bell helmet
    stripes spots dots patterns pattern lace wool denim leather silk velvet cotton washes watermark deformed
    halftone expressive cel claymation plasticine figures miniature set bit limited crisp smooth gradients natural
    shallow depth colouring layered cut collage craft cover illustrated storybook lighthouse treehouse puddle
    raincoat cottage
""".split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]  # CLIP splits these off a word and reads each as one token
# Bump when the tiny models change (here: the vocabulary); a cache folder without this version's marker is rebuilt.
BUILD_VERSION = 2

BASE_FOLDER = "base"
REFINER_FOLDER = "refiner"
_MARKER = Path(f"tiny-sdxl-v{BUILD_VERSION}.json")


def build_tiny_sdxl(folder: Path) -> Path:
    """Build the tiny base into `folder/base` and the refiner into `folder/refiner` unless present; returns `folder`.

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
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    tokenizer = _clip_tokenizer(folder / ".vocabulary")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        text_encoder, text_encoder_2 = _text_encoders(tokenizer)
        vae = _vae()
        # Base: both encoders (32 + 32 = 64 wide); time ids 6 × 8 plus the pooled 32 = 80.
        base_unet = _unet(cross_attention_dim=64, projection_class_embeddings_input_dim=80)
        # Refiner: the second encoder only (32 wide); time ids with aesthetic score 5 × 8 plus 32 = 72.
        refiner_unet = _unet(cross_attention_dim=32, projection_class_embeddings_input_dim=72)

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
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=vae,
        text_encoder=None,
        text_encoder_2=text_encoder_2,
        tokenizer=None,
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
        known = [pair for pair in zip(pieces, pieces[1:]) if pair in ranks]
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
