"""The rules every generated piece passes: what they let through (stories) and what they stop (machinery)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from webapp.story.rules import Expectations, Piece, check, cut_repetition, is_language, tidy

EXPECT = Expectations(names=("Mia", "Leo"), idea_words=("lost", "kite"))
STORY = "Mia and Leo ran to the top of the hill. The red kite pulled at its string like a puppy. Leo laughed and let it fly."


def test_a_real_page_passes() -> None:
    verdict = check(STORY, Piece.page, EXPECT)
    assert verdict.usable and verdict.violations == []


@pytest.mark.parametrize(
    "text, rule",
    [
        ('{"title": "StoryOutlineSchema"} Mia and Leo went home. They were happy and tired after a long day out.', "machinery"),
        ("Mia and Leo read about kites at https://example.org and then went outside to play in the sun all day.", "url"),
        ("Mia and Leo found the page_text field under the old tree. It was the strangest thing they had seen all week.", "field name"),
        ("Mia and Leo were happy. They played with the kite, the kite, the kite, the kite all day long in the park.", "repetition"),
        ("Mia and Leo. Went home.", "too short"),
        ("Mia and Leo were in the park and they had a kite and they flew the kite and it was a very good day for them", "sentences"),
        ("On page 3 Mia and Leo fly the kite high above the trees. The wind is strong and the sky is blue and clear.", "about the book"),
        ("The dog and the girl ran up the hill with the kite. The wind was strong and the sky was very blue that day.", "names"),
        ("Mia and Leo, as an AI language model, I cannot write this. Please ask for something else instead today.", "schema word"),
    ],
)
def test_machinery_and_non_stories_break_a_named_rule(text: str, rule: str) -> None:
    verdict = check(tidy(text, Piece.page), Piece.page, EXPECT)
    assert rule in {violation.rule for violation in verdict.violations}, verdict.violations
    assert not verdict.usable


def test_the_idea_is_a_soft_rule_except_on_the_opening_page() -> None:
    text = "Mia and Leo ran to the top of the hill. The wind pulled at their coats. Leo laughed and Mia sang a song."
    assert check(text, Piece.page, EXPECT).usable
    assert check(text, Piece.page, EXPECT).misses == 1
    from dataclasses import replace

    assert not check(text, Piece.page, replace(EXPECT, must_keep=True)).usable


def test_tidy_removes_labels_quotes_markdown_a_cut_sentence_and_a_runaway_tail() -> None:
    raw = '**Page 2:** "Mia and Leo ran. They laughed. They laughed. They laughed. They lau'
    assert tidy(raw, Piece.page) == "Mia and Leo ran. They laughed."
    assert tidy("Title: **The Lost Kite**\nMore text", Piece.title) == "The Lost Kite"
    assert cut_repetition("A cat sat. A dog ran. A cat sat. A cat sat.") == "A cat sat. A dog ran."


def test_blocked_words_are_hard_rules() -> None:
    verdict = check(STORY, Piece.page, Expectations(names=("Mia",), blocked_words=("kite",)))
    assert not verdict.usable and "blocked word" in {v.rule for v in verdict.violations}


def test_translations_must_be_in_the_language_script_and_of_plausible_length() -> None:
    korean = Expectations(source=STORY, script=("HANGUL",))
    assert check("미아와 레오는 언덕 꼭대기로 달려갔어요. 빨간 연이 강아지처럼 줄을 당겼어요. 레오는 웃으며 연을 날렸어요.", Piece.translation, korean).usable
    assert not check(STORY, Piece.translation, korean).usable
    assert not check("미아.", Piece.translation, korean).usable


def test_the_instructions_must_not_be_echoed_but_the_material_may_be() -> None:
    instructions = 'Write 3 to 4 short sentences about what happens now, in English. Now: "Mia and Leo fly the red kite over the hill."'
    material = "Mia and Leo fly the red kite over the hill."
    echo = "Write 3 to 4 short sentences about what happens now. Mia and Leo fly the red kite over the hill."
    assert "echo" in {v.rule for v in check(echo, Piece.page, Expectations(names=("Mia",), instructions=instructions, material=material)).violations}
    own = "Mia and Leo fly the red kite over the hill. It dips and soars. They cheer as it climbs into the clouds above."
    assert "echo" not in {v.rule for v in check(own, Piece.page, Expectations(names=("Mia",), instructions=instructions, material=material)).violations}


@pytest.mark.parametrize(
    "caption, usable",
    [
        ("A small cat sits on a warm red blanket near the window.", True),
        ("Two children build a sandcastle on the beach at sunset.", True),
        ("ndow warm blanket blanket blanket sits sits lighthouse", False),
        ("<s> {{ ĠĠ }} Ċ", False),
        ("cat", False),
    ],
)
def test_a_caption_that_is_not_language_is_recognised(caption: str, usable: bool) -> None:
    assert is_language(caption) is usable


def test_no_text_whatever_it_holds_makes_the_rules_fail() -> None:
    """Generated text is untrusted: tidying and checking any string must return a verdict, never raise."""
    import random

    alphabet = "ab Mia.!?\"'“”«»{}[]<>_:\n\t\x00\u202e한글عربي😀-–—*#1234567890"
    rng = random.Random(7)
    samples = ["", " ", '"', "“", "''", "\n\n", "...", "Title:", "1.", *("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(400))]
    for text in samples:
        for piece in Piece:
            tidied = tidy(text, piece)
            verdict = check(tidied, piece, Expectations(names=("Mia",), idea_words=("kite",), source=text, script=("HANGUL",)))
            assert isinstance(verdict.usable, bool)
        is_language(text)


# --- titles, names, audience and the reader's language ---------------------------------------------------------------

TITLE_EXPECT = Expectations(names=("Aiko",), opening="Aiko walked into the old temple and saw a door she had never seen before.")


@pytest.mark.parametrize(
    "title, detail",
    [
        ("The story begins with Aiko, a bright and curious girl. She's a brave a", "talks about its own work"),
        ("Aiko found a door. It was old", "more than one sentence"),
        ("Aiko and the", "as if cut off"),
        ("Aiko walked into the old temple", "copies the story's first line"),
        ("Aiko and the very very long and winding road to the old stone temple", "1–10 words"),
        ("8 Pages of the Endless Shadows", "talks about the book"),
    ],
)
def test_a_title_is_a_short_phrase_not_a_cut_sentence(title: str, detail: str) -> None:
    verdict = check(tidy(title, Piece.title, max_chars=80), Piece.title, TITLE_EXPECT)
    assert not verdict.usable and any(detail in violation.detail for violation in verdict.violations), verdict.violations


@pytest.mark.parametrize("title", ["Mr. Fox and the Moon", "Where the Wild Things Are", "Aiko and the Secret Door", "Guess Who"])
def test_ordinary_titles_pass(title: str) -> None:
    assert check(tidy(title, Piece.title, max_chars=80), Piece.title, TITLE_EXPECT).violations == []


def test_a_title_cut_by_its_length_ends_on_a_whole_word() -> None:
    cut = tidy("Aiko and the Secret Door of the Whispering Mountains", Piece.title, max_chars=30)
    assert cut == "Aiko and the Secret Door of" or not cut.endswith(("Whisp", "Mountai"))
    assert check(tidy("Aiko and the Secret Door", Piece.title, max_chars=30), Piece.title, TITLE_EXPECT).violations == []


@pytest.mark.parametrize(
    "page",
    [
        "Aiko walked in. Aiko, the brave Aisha, looked at the huge door and smiled at the carvings on the old wall.",
        "Aki-Dana, the brave Aiko, was right there with her mother. They found a secret door in the temple at noon.",
        "Aiko climbed the steps of the temple. Then Aki laughed and pushed the heavy door open with both hands.",
    ],
)
def test_a_page_that_renames_the_hero_breaks_the_names_rule(page: str) -> None:
    verdict = check(tidy(page, Piece.page), Piece.page, Expectations(names=("Aiko",), min_words=10))
    assert [violation.rule for violation in verdict.violations] == ["names"]
    assert verdict.misses == 1  # soft: the writer asks again and keeps the best answer


def test_inflected_names_and_other_characters_are_not_renames() -> None:
    page = "Aiko's lantern glowed. Then Aiko met Tom, and Aikos' friend Maru waved from the old temple door all day."
    assert check(page, Piece.page, Expectations(names=("Aiko",), min_words=10)).violations == []
    family = "Mia met her Mum and Max by the gate. Ben saw a Bear, and Sam waved at Santa under the big tree all day."
    assert check(family, Piece.page, Expectations(names=("Mia", "Ben", "Sam"), min_words=10)).violations == []


def test_characters_may_say_what_would_be_talk_about_the_work_in_narration() -> None:
    page = '"I\'ve made you a present," said Mia. "Let me know if you see the dragon," she whispered, and ran outside.'
    assert check(page, Piece.page, Expectations(names=("Mia",), min_words=10)).violations == []


def test_a_childrens_page_keeps_out_bars_and_drink_but_the_readers_own_words_stay_allowed() -> None:
    from webapp.story.audience_words import audience_words
    from webapp.story.options import Audience

    page = "Aiko and Leo walked past the Whiskey Bar on their way to the old temple. They waved at the moon and laughed."
    children = audience_words(Audience.children)
    verdict = check(page, Piece.page, Expectations(names=("Aiko",), audience_words=children))
    assert not verdict.usable and verdict.violations[0].rule == "audience"
    assert check(page, Piece.page, Expectations(names=("Aiko",), audience_words=audience_words(Audience.adults))).usable
    asked = audience_words(Audience.children, allowed_text="a pirate who runs a tavern")
    assert "tavern" not in asked and "whiskey" in asked
    assert audience_words(Audience.children, {"children": ["wizard"]}) == ("wizard",)


def test_emoji_runs_are_taken_out_of_prose() -> None:
    assert tidy("Aiko laughed 😁😁😁 💡💡🎄 and ran up the hill.", Piece.page) == "Aiko laughed and ran up the hill."


GERMAN = Expectations(names=("Mia",), language="de", source="Mia found a red kite in the park. She was very happy.")


@pytest.mark.parametrize(
    "text, rule",
    [
        ("Mia found a red kite in the park. She was very happy about it.", "language"),
        ("Mia fand einen roten Drachen im Park. I have made a lot of changes to help the text flow better.", "talk about the work"),
        ('In German, the word for "magic" is "Kritik". Mia fand einen Drachen.', "talk about the work"),
        ("Hier ist die Übersetzung: Mia fand einen roten Drachen im Park.", "talk about the work"),
    ],
)
def test_a_translation_in_the_wrong_language_or_about_itself_is_refused(text: str, rule: str) -> None:
    verdict = check(text, Piece.translation, GERMAN)
    assert rule in {violation.rule for violation in verdict.violations} and not verdict.usable, verdict.violations


def test_a_german_translation_passes_and_short_or_neighbouring_texts_are_not_misjudged() -> None:
    from webapp.story.language_check import wrong_language

    assert check("Mia fand einen roten Drachen im Park. Sie war sehr glücklich.", Piece.translation, GERMAN).usable
    assert wrong_language("Mia", "de", names=("Mia",)) is None  # nothing left to judge
    assert wrong_language("Mia og den røde drage fløj højt over parken i dag.", "no") is None  # Danish for Norwegian
    assert wrong_language("Mia y la cometa roja volaron sobre el parque, y luego comieron pan en la casa de la abuela.", "de") is not None
    assert wrong_language("Mia and the little dragon", "de", names=("Mia",)) is not None  # an untranslated title
    for title, language in (("Dragonul cel mic al Miei", "ro"), ("Mia og litli drekinn", "is"), ("Miaren herensuge txikia", "eu")):
        assert wrong_language(title, language, names=("Mia",)) is None, title  # short: only "it is English" is judged


def test_fallback_titles_come_from_the_idea_and_fallback_pages_never_repeat_a_sentence() -> None:
    import re

    from webapp.story import fallbacks

    assert fallbacks.title(fallbacks.StoryFacts(("Aiko",), "a girl who finds a secret door in an old temple")) == "Aiko and the Secret Door"
    assert fallbacks.title(fallbacks.StoryFacts(("Nova",), "a trip to the moon to find a missing star")) == "Nova and the Missing Star"
    assert fallbacks.title(fallbacks.StoryFacts(("Mia",), "Mia learns to swim")) == "Mia's Big Day"
    facts = fallbacks.StoryFacts(("Aiko",), "a secret door")
    for pages in (2, 8, 24):
        texts = [fallbacks.page_text(fallbacks.beat(page, pages, facts), page, pages, facts) for page in range(1, pages + 1)]
        said = [sentence for text in texts for sentence in re.split(r"(?<=[.!?])\s+", text)]
        assert len(said) == len(set(said)), pages


def test_a_page_may_not_begin_by_repeating_the_books_title() -> None:
    expect = Expectations(names=("Aiko",), book_title="The Luminous Light of Aiko", min_words=5)
    glued = "The Luminous Light of Aiko's eyes widened as she stepped into the temple. The temple was old and grand."
    assert "title" in {violation.rule for violation in check(glued, Piece.page, expect).violations}
    own = "The luminous light filled the temple as Aiko stepped in. She smiled at the old walls."
    assert check(own, Piece.page, expect).usable
    # A one-word title may well be the heroine's name: a page may begin with it.
    assert check("Aiko stepped into the temple. She smiled at the old walls and the light.", Piece.page, replace(expect, book_title="Aiko")).usable
