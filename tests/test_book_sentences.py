"""Sentence splitting for narration and read-along, in every script Fabula writes."""

from __future__ import annotations

import re

import pytest

from webapp.book.sentences import MAX_SENTENCE_CHARS, split_sentences


def without_space(text: str) -> str:
    return re.sub(r"\s", "", text)


CASES = [
    ("en", 'Mr. Smith met Dr. Jones at 3.14 p.m. in the garden. "Where is the cat?" she asked. J. K. Rowling wrote '
           "it! Really?! Yes... It was fun.",
     ["Mr. Smith met Dr. Jones at 3.14 p.m. in the garden.", '"Where is the cat?" she asked.', "J. K. Rowling wrote it!",
      "Really?!", "Yes...", "It was fun."]),
    ("es", "¿Dónde está el gato? ¡Ven aquí, gatito! La Sra. García sonrió.",
     ["¿Dónde está el gato?", "¡Ven aquí, gatito!", "La Sra. García sonrió."]),
    ("ru", "Кот спал. Проф. Иванов пришёл домой! Что дальше?", ["Кот спал.", "Проф. Иванов пришёл домой!", "Что дальше?"]),
    ("el", "Πού είναι η γάτα; Είναι στον κήπο.", ["Πού είναι η γάτα;", "Είναι στον κήπο."]),
    ("ja", "猫が庭にいた。「こんにちは！」と言った。本当？うん。",
     ["猫が庭にいた。", "「こんにちは！」と言った。", "本当？", "うん。"]),
    ("zh", "小猫在花园里。它很饿！你好吗？“我很好！”它说。",
     ["小猫在花园里。", "它很饿！", "你好吗？", "“我很好！”它说。"]),
    ("ar", "أين القطة؟ إنها في الحديقة. ذهبت إلى البيت!", ["أين القطة؟", "إنها في الحديقة.", "ذهبت إلى البيت!"]),
    ("ur", "بلی باغ میں ہے۔ وہ خوش ہے۔", ["بلی باغ میں ہے۔", "وہ خوش ہے۔"]),
    ("fa", "گربه کجاست؟ در باغ است.", ["گربه کجاست؟", "در باغ است."]),
    ("hi", "बिल्ली बगीचे में है। वह खुश है। क्या तुम आओगे?", ["बिल्ली बगीचे में है।", "वह खुश है।", "क्या तुम आओगे?"]),
    ("th", "แมวอยู่ในสวน มันหิวมาก แล้วมันก็กินข้าว", ["แมวอยู่ในสวน", "มันหิวมาก", "แล้วมันก็กินข้าว"]),
    ("en", "once upon a time there was a cat who never stopped", ["once upon a time there was a cat who never stopped"]),
    ("en", "A line.\n\nA paragraph without a stop\n\nThe last", ["A line.", "A paragraph without a stop", "The last"]),
]


@pytest.mark.parametrize(("language", "text", "expected"), CASES, ids=[f"{case[0]}-{index}" for index, case in enumerate(CASES)])
def test_split_sentences_finds_each_sentence_of_every_script(language: str, text: str, expected: list[str]) -> None:
    sentences = split_sentences(text, language)
    assert sentences == expected
    assert without_space("".join(sentences)) == without_space(text)


def test_decimals_and_dotted_words_do_not_end_a_sentence() -> None:
    assert split_sentences("It cost 3.50 euros, e.g. a lot. Then it rained.", "en") == [
        "It cost 3.50 euros, e.g. a lot.", "Then it rained."]


def test_blank_text_has_no_sentences() -> None:
    assert split_sentences("  \n\n ", "en") == []


@pytest.mark.parametrize(("language", "text"), [
    ("en", ", ".join(["the little cat ran over the green hill and far away"] * 14) + "."),
    ("zh", "小猫在花园里玩耍，" * 50 + "。"),
    ("en", " ".join(["word"] * 200)),
    ("ja", "ねこ" * 400),
])
def test_long_sentences_are_cut_below_the_limit_without_losing_text(language: str, text: str) -> None:
    sentences = split_sentences(text, language)
    assert len(sentences) > 1
    assert all(len(sentence) <= MAX_SENTENCE_CHARS for sentence in sentences)
    assert without_space("".join(sentences)) == without_space(text)


def test_long_sentences_are_cut_after_a_comma() -> None:
    text = ", ".join(["the little cat ran over the green hill and far away"] * 14) + "."
    assert all(sentence.endswith((",", ".")) for sentence in split_sentences(text, "en"))


def test_hostile_and_mixed_text_keeps_every_character() -> None:
    text = 'He said <script>alert("x")</script>. ]]> & more!? \u202eevil\u202c. 中文。Done'
    sentences = split_sentences(text, "en")
    assert without_space("".join(sentences)) == without_space(text)
    assert sentences[0] == 'He said <script>alert("x")</script>.'
