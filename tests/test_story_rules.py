"""The rules every generated piece passes: what they let through (stories) and what they stop (machinery)."""

from __future__ import annotations

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
