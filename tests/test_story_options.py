"""What a book can be asked for: languages, styles, pages, brand kit."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from webapp.story.languages import LANGUAGES, find_language
from webapp.story.options import BrandKit, StoryOptions
from webapp.story.styles import STYLES


def test_at_least_forty_languages_found_by_code_english_or_native_name() -> None:
    assert len(LANGUAGES) >= 40
    assert find_language("ko").name == "Korean"
    assert find_language("Korean").code == "ko"
    assert find_language("한국어").code == "ko"
    assert find_language("pt-BR").code == "pt"
    assert find_language("ar").rtl and find_language("he").rtl
    with pytest.raises(ValueError, match="unknown language"):
        find_language("Klingon")


def test_at_least_six_style_presets() -> None:
    assert len(STYLES) >= 6
    assert StoryOptions(style="Pixel art").style == "pixel-art"


@pytest.mark.parametrize("pages", [0, 25])
def test_pages_must_be_between_one_and_twenty_four(pages: int) -> None:
    with pytest.raises(ValidationError, match="pages"):
        StoryOptions(pages=pages)


def test_options_normalise_language_and_names() -> None:
    options = StoryOptions(language="Japanese", character_names=[" Mia ", "", "Leo"])
    assert options.language == "ja"
    assert options.character_names == ["Mia", "Leo"]


def test_brand_kit_checks_colours_and_links() -> None:
    assert BrandKit(name="Acme", primary_color="#aabbcc").primary_color == "#AABBCC"
    with pytest.raises(ValidationError, match="RRGGBB"):
        BrandKit(name="Acme", primary_color="red")
    with pytest.raises(ValidationError, match="http"):
        BrandKit(name="Acme", cta_url="javascript:alert(1)")


@pytest.mark.parametrize("wrong", [0, 25, 500])
def test_every_form_refuses_pages_out_of_range_in_one_sentence(wrong: int) -> None:
    """The studio's Pages box has no limits of its own (it would clamp 500 to 24 silently): this rule decides for
    it, the REST API and the CLI alike."""
    from shared.errors import InvalidRequest
    from webapp.story.forms import StoryForm

    with pytest.raises(InvalidRequest, match=f"a book has 1 to 24 pages, not {wrong}"):
        StoryForm(pages=wrong).options(max_pages=24)
