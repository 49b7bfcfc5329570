"""EPUB 3 Media Overlays: one SMIL document per narrated page, pairing each sentence span with its audio clip.

A reading system plays the `<par>` elements in order and, while one plays, gives its sentence the
`media:active-class` class, so the reader sees the spoken sentence highlighted. Times are whole milliseconds
written as full SMIL clock values ("0:00:03.250"); a clip is at least a millisecond long, since a clip whose
end equals its begin is an error. An overlay's duration is the sum of its clips, and the book's the sum of
its overlays, so the package document's durations always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webapp.book.epub_text import SentenceSpan, xml_attribute


@dataclass(frozen=True)
class Clip:
    span_id: str
    begin_ms: int
    end_ms: int


@dataclass(frozen=True)
class Overlay:
    """The media overlay of one content document."""

    id: str  # its manifest item id
    href: str  # the SMIL document, relative to the package document
    text_href: str  # the content document it narrates
    text_root: str  # the id of the element in it that holds every narrated sentence
    audio_href: str
    clips: tuple[Clip, ...]

    @property
    def duration_ms(self) -> int:
        return sum(clip.end_ms - clip.begin_ms for clip in self.clips)


def clock_value(milliseconds: int) -> str:
    """A SMIL full clock value, hours:minutes:seconds.milliseconds."""
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def clips_for(spans: Sequence[SentenceSpan]) -> tuple[Clip, ...]:
    """One clip per timed span, in order (spans without times are not narrated and get none)."""
    clips = []
    for span in spans:
        if span.begin is None or span.end is None:
            continue
        begin = round(span.begin * 1000)
        clips.append(Clip(span.id, begin, max(round(span.end * 1000), begin + 1)))
    return tuple(clips)


def smil_document(overlay: Overlay) -> str:
    """The overlay as a SMIL 3.0 document (the EPUB Media Overlays profile)."""
    text_href, audio_href = xml_attribute(overlay.text_href), xml_attribute(overlay.audio_href)
    pars = "\n".join(
        f'<par id="par-{clip.span_id}">'
        f'<text src="{text_href}#{clip.span_id}"/>'
        f'<audio src="{audio_href}" clipBegin="{clock_value(clip.begin_ms)}" clipEnd="{clock_value(clip.end_ms)}"/>'
        "</par>"
        for clip in overlay.clips
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<smil xmlns="http://www.w3.org/ns/SMIL" xmlns:epub="http://www.idpf.org/2007/ops" version="3.0">\n'
        f'<body>\n<seq id="seq-{xml_attribute(overlay.id)}" epub:textref="{text_href}#{xml_attribute(overlay.text_root)}">\n{pars}\n</seq>\n</body>\n</smil>\n'
    )
