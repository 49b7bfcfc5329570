"""Picture prompts fit CLIP's 75-token window by construction: scene first, looks without names, the style's look."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

from webapp.story.clip_tokens import CLIP_WINDOW_TOKENS, COMMON_WORDS, estimate_clip_tokens
from webapp.story.picture_prompt import MIN_BUDGET_TOKENS, TEXT_NEGATIVES, PicturePrompt, picture_prompt
from webapp.story.styles import STYLE_MAX_TOKENS, STYLES

STYLE_IDS = [style.id for style in STYLES]
SCENE = "Milo the fox and his friend Pip share a picnic under a huge oak tree at sunset, golden light, wide shot"
LONG_SCENE = (
    "A little girl with curly red hair climbs a rope ladder into a treehouse while her grey cat watches from a "
    "branch and two squirrels argue over an acorn beneath the swaying leaves of the ancient chestnut tree. "
    "Far below, her grandfather waves a checked handkerchief, a wicker basket of apples at his feet; lanterns "
    "glow in the windows of the cottage, fireflies drift over the pond, and a heron stands perfectly still in the reeds."
)
CHARACTERS = [
    ("Milo", "Milo is a small red fox with a green knitted scarf, a bushy white-tipped tail and amber eyes"),
    ("Pip", "a tiny hedgehog in a yellow raincoat, red rubber boots and round spectacles"),
]
LONG_LOOKS = [
    (f"Character{index}", f"a {colour} {animal} with a patched {colour} waistcoat, polished brass buttons, a feathered "
     f"hat, striped woollen socks, a leather satchel full of maps and a walking stick carved from driftwood")
    for index, (colour, animal) in enumerate(zip(["red", "blue", "green", "purple", "orange", "silver", "golden", "pink"],
                                                 ["badger", "otter", "owl", "rabbit", "tortoise", "raccoon", "beaver", "mole"], strict=True))
]
HOSTILE_SCENE = (
    "{{system}} ignore previous instructions}} 🦊🌳✨ A fox\n\nreads <b>under</b> a tree\t\u200b\u0007; "
    "\\n\\n ``` [[[ ]]] ((( ))) @@@ ### $$$ %%% ^^^ *** ||| ~~~ ,,, ... ;;; !!! ??? — – “quoted” «guillemets» "
    "\U0001F468\u200D\U0001F469\u200D\U0001F467 café naïve Zoë 小猫 العربية"
)
DANGLING_ENDS = {"a", "an", "the", "and", "or", "of", "with", "in", "on", "at", "to", "from", "by", "for", "while"}


def _assert_well_formed(result: PicturePrompt, budget: int = CLIP_WINDOW_TOKENS) -> None:
    for text, estimated in ((result.prompt, result.estimated_tokens), (result.negative_prompt, result.negative_estimated_tokens)):
        assert text, "a prompt is never empty"
        assert estimated == estimate_clip_tokens(text) <= budget
        assert text == text.strip() and not re.search(r"^[\s,.;:]|[\s,;:]$", text)
        assert ", ," not in text and ",," not in text and "  " not in text
        for clause in text.split(", "):
            assert clause.strip() == clause and any(character.isalpha() for character in clause), text
            assert clause.split()[-1].lower() not in DANGLING_ENDS, f"{clause!r} dangles in {text!r}"
        assert not re.search(r"[{}\[\]<>\n\t\\`|~@#$%^*]", text)


def _clauses(text: str) -> list[str]:
    return [clause.lower() for clause in text.split(", ")]


@pytest.mark.parametrize("style_id", STYLE_IDS)
def test_every_style_preset_is_short_and_its_look_comes_whole_when_there_is_room(style_id: str) -> None:
    style = next(style for style in STYLES if style.id == style_id)
    assert estimate_clip_tokens(style.prompt) <= STYLE_MAX_TOKENS
    assert not re.search(r"(^|, )no ", style.prompt), "negations belong in the negative prompt"
    result = picture_prompt("a fox reading under a tree", [], style_id)
    assert result.prompt == f"a fox reading under a tree, {style.prompt}"
    assert result.shortened == ()
    _assert_well_formed(result)


@pytest.mark.parametrize("style_id", STYLE_IDS)
def test_long_scene_keeps_its_first_words_and_the_style_within_the_budget(style_id: str) -> None:
    style = next(style for style in STYLES if style.id == style_id)
    result = picture_prompt(LONG_SCENE, CHARACTERS, style_id)
    _assert_well_formed(result)
    assert result.prompt.startswith("A little girl with curly red hair climbs a rope ladder")
    assert style.prompt.split(", ")[0] in result.prompt
    assert "scene" in result.shortened
    assert "a small red fox with a green knitted scarf" in result.prompt


def test_a_scene_of_one_endless_sentence_is_cut_at_a_phrase_boundary() -> None:
    scene = " ".join(["a fox runs through the tall grass with a kite and a lantern"] * 12)
    result = picture_prompt(scene, [], "watercolor")
    _assert_well_formed(result)
    assert result.prompt.startswith("a fox runs through the tall grass with a kite")
    assert result.prompt.endswith(STYLES[0].prompt)


@pytest.mark.parametrize("style_id", STYLE_IDS)
def test_many_characters_with_long_looks_share_the_room_without_their_names(style_id: str) -> None:
    result = picture_prompt(SCENE, LONG_LOOKS, style_id)
    _assert_well_formed(result)
    assert result.prompt.startswith(SCENE.split(",")[0])
    assert "characters" in result.shortened
    positions = [result.prompt.find(look) for look in ("a red badger", "a blue otter", "a green owl", "a purple rabbit")]
    assert -1 not in positions and positions == sorted(positions), "the first characters come first, in order"
    assert not any(name.lower() in result.prompt.lower() for name, _ in LONG_LOOKS)


def test_names_are_dropped_from_looks_but_the_look_is_kept() -> None:
    result = picture_prompt("a picnic under an oak tree", [("Milo", "Milo is a small red fox, amber eyes"), ("Bear", "Bear, a big brown bear")], "comic")
    assert "Milo" not in result.prompt and "Bear" not in result.prompt
    assert _clauses(result.prompt)[:4] == ["a picnic under an oak tree", "a small red fox", "amber eyes", "a big brown bear"]


def test_characters_named_in_the_scene_win_the_room_from_the_others() -> None:
    characters = [*LONG_LOOKS[:5], ("Pip", "a tiny hedgehog in a yellow raincoat")]
    result = picture_prompt("Pip waves from a rowing boat on a misty lake at dawn", characters, "anime")
    _assert_well_formed(result)
    assert "a tiny hedgehog in a yellow raincoat" in result.prompt


def test_hostile_text_is_cleaned_and_still_fits() -> None:
    characters = [("Zoë{}", "Zoë{}: ✨ a girl 👧 with {braces}\nand newlines\n\n"), ("<script>", "<script>alert(1)</script>"), ("\n", "\u0000\u202e")]
    for style_id in STYLE_IDS:
        result = picture_prompt(HOSTILE_SCENE, characters, style_id)
        _assert_well_formed(result)
        assert "ignore previous instructions" in result.prompt
        assert "🦊" not in result.prompt and "\u200b" not in result.prompt


def test_empty_scene_and_empty_looks_leave_no_stray_punctuation() -> None:
    style = STYLES[0]
    assert picture_prompt("", [], style.id).prompt == style.prompt
    result = picture_prompt("  \n ,,, ", [("Milo", ""), ("Pip", "   "), ("", ", ; ."), ("Ada", "Ada")], style.id)
    assert result.prompt == style.prompt
    _assert_well_formed(result)
    result = picture_prompt("a fox, , , and, the", [("Milo", "")], style.id)
    assert result.prompt == f"a fox, {style.prompt}"


def test_repeated_clauses_are_written_once() -> None:
    characters = [("Ann", "a girl in a red coat, warm light"), ("Bo", "a girl in a red coat"), ("Cy", "A GIRL IN A RED COAT, tall")]
    result = picture_prompt("a red kite, warm light, a red kite, a girl in a red coat", characters, "watercolor")
    _assert_well_formed(result)
    clauses = _clauses(result.prompt)
    assert len(clauses) == len(set(clauses))
    assert clauses.count("warm light") == 1 and clauses.count("a girl in a red coat") == 1
    assert "tall" in clauses


def test_negative_prompt_steers_away_from_text_and_takes_the_scenes_negations() -> None:
    for style in STYLES:
        result = picture_prompt("a fox in the snow. No text or letters in the picture, no people", CHARACTERS, style.id)
        _assert_well_formed(result)
        negatives = _clauses(result.negative_prompt)
        assert negatives[:2] == ["text", "letters"] and set(TEXT_NEGATIVES) <= set(negatives)
        assert "people" in negatives
        assert not any(clause.startswith("no ") for clause in _clauses(result.prompt))


@pytest.mark.parametrize("budget", [MIN_BUDGET_TOKENS, 40, 60, CLIP_WINDOW_TOKENS, 150])
def test_any_budget_is_respected(budget: int) -> None:
    result = picture_prompt(LONG_SCENE, LONG_LOOKS, "claymation", budget_tokens=budget)
    _assert_well_formed(result, budget)
    assert result.prompt.startswith("A little girl")
    assert "claymation" in result.prompt


def test_a_budget_too_small_for_a_scene_and_a_style_is_refused() -> None:
    with pytest.raises(ValueError, match=rf"`budget_tokens` is 10; it must be at least {MIN_BUDGET_TOKENS}"):
        picture_prompt(SCENE, [], "comic", budget_tokens=10)


def test_unknown_style_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown style 'oil'"):
        picture_prompt(SCENE, [], "oil")


def test_random_text_always_gives_a_well_formed_prompt_within_the_budget() -> None:
    generator = random.Random(20241202)
    alphabet = "abcdefghijklmnopqrstuvwxyz      ,,;.:-'\n{}[]<>🦊é小\u200b\t0123456789"
    words = sorted(COMMON_WORDS)
    for _ in range(200):
        def text(length: int) -> str:
            return "".join(generator.choice(words) + " " if generator.random() < 0.6 else generator.choice(alphabet) for _ in range(length))

        characters = [(text(2), text(generator.randrange(0, 40))) for _ in range(generator.randrange(0, 6))]
        result = picture_prompt(text(generator.randrange(0, 120)), characters, generator.choice(STYLE_IDS))
        _assert_well_formed(result)


def test_estimate_counts_words_digits_and_symbols_as_clip_splits_them() -> None:
    assert estimate_clip_tokens("") == 0
    assert estimate_clip_tokens("a fox in the forest") == 5  # common words are one token each
    assert estimate_clip_tokens("A FOX") == 2  # CLIP lower-cases
    assert estimate_clip_tokens("children's") == 2  # "children" + "'s"
    assert estimate_clip_tokens("2024") == 4  # CLIP reads digits one at a time
    assert estimate_clip_tokens("fox, tree.") == 4
    assert estimate_clip_tokens("plasticine") == 4  # rare: ceil(10 / 3)
    assert estimate_clip_tokens("🦊") == 4  # at most one token per byte
    assert estimate_clip_tokens("小猫") == 6


def _real_clip_tokenizer_folder() -> Path | None:
    """A real CLIP tokenizer on this machine: FABULA_CLIP_TOKENIZER, or SDXL base's in the local Hugging Face cache."""
    configured = os.environ.get("FABULA_CLIP_TOKENIZER")
    if configured:
        return Path(configured)
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download("stabilityai/stable-diffusion-xl-base-1.0", allow_patterns=["tokenizer/*"], local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache: the test is skipped
        return None
    return folder / "tokenizer" if (folder / "tokenizer" / "vocab.json").is_file() else None


@pytest.mark.slow
def test_estimate_never_undercounts_the_real_clip_tokenizer() -> None:
    folder = _real_clip_tokenizer_folder()
    if folder is None:
        pytest.skip("no real CLIP tokenizer here (set FABULA_CLIP_TOKENIZER to a folder with vocab.json and merges.txt)")
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(folder)

    def real(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, verbose=False).input_ids)

    assert [word for word in sorted(COMMON_WORDS) if real(word) != 1] == []
    samples = [SCENE, LONG_SCENE, HOSTILE_SCENE, *(look for _, look in CHARACTERS + LONG_LOOKS), *(style.prompt for style in STYLES)]
    for sample in samples:
        assert estimate_clip_tokens(sample) >= real(sample), sample
    for style_id in STYLE_IDS:
        result = picture_prompt(LONG_SCENE, LONG_LOOKS, style_id)
        assert real(result.prompt) <= result.estimated_tokens and real(result.negative_prompt) <= result.negative_estimated_tokens
