"""The reader's own words (buttons, page counter, notes) in the book's language; other languages get English."""

from __future__ import annotations

from pydantic import BaseModel

from webapp.book.text_shaping import primary_language


class ReaderLabels(BaseModel):
    """`page` and `page_short` take `{page}` and `{total}`."""

    play: str
    pause: str
    previous: str
    next: str
    page: str
    page_short: str
    cover: str
    no_audio: str
    files: str
    audiobook: str
    pages: str
    by: str


_LABELS = {
    "en": ReaderLabels(
        play="Play", pause="Pause", previous="Previous page", next="Next page", page="Page {page} of {total}",
        page_short="{page} / {total}", cover="Cover", no_audio="This page has no narration.", files="Book files",
        audiobook="Audiobook", pages="Pages", by="by",
    ),
    "es": ReaderLabels(
        play="Reproducir", pause="Pausa", previous="Página anterior", next="Página siguiente",
        page="Página {page} de {total}", page_short="{page} / {total}", cover="Portada",
        no_audio="Esta página no tiene narración.", files="Archivos del libro", audiobook="Audiolibro",
        pages="Páginas", by="de",
    ),
    "fr": ReaderLabels(
        play="Lecture", pause="Pause", previous="Page précédente", next="Page suivante", page="Page {page} sur {total}",
        page_short="{page} / {total}", cover="Couverture", no_audio="Cette page n’est pas lue à voix haute.",
        files="Fichiers du livre", audiobook="Livre audio", pages="Pages", by="de",
    ),
    "de": ReaderLabels(
        play="Abspielen", pause="Pause", previous="Vorherige Seite", next="Nächste Seite",
        page="Seite {page} von {total}", page_short="{page} / {total}", cover="Titelbild",
        no_audio="Diese Seite wird nicht vorgelesen.", files="Buchdateien", audiobook="Hörbuch", pages="Seiten",
        by="von",
    ),
    "ar": ReaderLabels(
        play="تشغيل", pause="إيقاف مؤقت", previous="الصفحة السابقة", next="الصفحة التالية",
        page="الصفحة {page} من {total}", page_short="{page} / {total}", cover="الغلاف",
        no_audio="لا توجد قراءة صوتية لهذه الصفحة.", files="ملفات الكتاب", audiobook="كتاب صوتي", pages="الصفحات",
        by="بقلم",
    ),
    "he": ReaderLabels(
        play="הפעלה", pause="השהיה", previous="העמוד הקודם", next="העמוד הבא", page="עמוד {page} מתוך {total}",
        page_short="{page} / {total}", cover="כריכה", no_audio="אין הקראה לעמוד הזה.", files="קובצי הספר",
        audiobook="ספר שמע", pages="עמודים", by="מאת",
    ),
}


def reader_labels(language: str | None) -> ReaderLabels:
    code = primary_language(language)
    return _LABELS.get("he" if code == "iw" else code, _LABELS["en"])
