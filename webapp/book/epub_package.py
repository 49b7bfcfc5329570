"""The EPUB's package document (metadata, manifest, spine) and the OCF container that points to it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, UTC

from webapp.book.epub_documents import ACTIVE_CLASS
from webapp.book.epub_overlays import Overlay, clock_value
from webapp.book.epub_text import xml_attribute, xml_text

PACKAGE_PATH = "EPUB/package.opf"
CONTAINER_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">\n'
    f'<rootfiles>\n<rootfile full-path="{PACKAGE_PATH}" media-type="application/oebps-package+xml"/>\n</rootfiles>\n'
    "</container>\n"
)


@dataclass(frozen=True)
class ManifestItem:
    id: str
    href: str  # relative to the package document
    media_type: str
    data: bytes
    properties: str = ""
    media_overlay: str = ""  # the id of the item's overlay
    in_spine: bool = False


@dataclass(frozen=True)
class PackageMetadata:
    title: str
    language: str
    author: str
    subject: str
    identifier: str
    modified: datetime
    right_to_left: bool
    narrators: Sequence[str] = field(default_factory=tuple)


def book_urn(identifier: str) -> str:
    """`urn:uuid:` of `identifier` when it is a UUID, else a name-based UUID of it (the same book, the same URN)."""
    try:
        return f"urn:uuid:{uuid.UUID(identifier)}"
    except ValueError:
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'fabula:book:' + identifier)}"


def modified_stamp(moment: datetime) -> str:
    """`dcterms:modified` wants UTC to the second: CCYY-MM-DDThh:mm:ssZ."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def package_document(metadata: PackageMetadata, items: Sequence[ManifestItem], overlays: Sequence[Overlay]) -> str:
    """The package document: Dublin Core metadata, media overlay durations, every item, and the reading order."""
    lines = [
        f'<dc:identifier id="book-id">{xml_text(book_urn(metadata.identifier))}</dc:identifier>',
        f"<dc:title>{xml_text(metadata.title)}</dc:title>",
        f"<dc:language>{xml_text(metadata.language)}</dc:language>",
        f'<meta property="dcterms:modified">{modified_stamp(metadata.modified)}</meta>',
    ]
    if metadata.author.strip():
        lines.append(f"<dc:creator>{xml_text(metadata.author)}</dc:creator>")
    if metadata.subject.strip():
        lines.append(f"<dc:description>{xml_text(metadata.subject)}</dc:description>")
    if overlays:
        total = sum(overlay.duration_ms for overlay in overlays)
        lines.append(f'<meta property="media:duration">{clock_value(total)}</meta>')
        lines.extend(f'<meta property="media:duration" refines="#{overlay.id}">{clock_value(overlay.duration_ms)}</meta>'
                     for overlay in overlays)
        lines.append(f'<meta property="media:active-class">{ACTIVE_CLASS}</meta>')
        lines.extend(f'<meta property="media:narrator">{xml_text(narrator)}</meta>'
                     for narrator in dict.fromkeys(metadata.narrators) if narrator.strip())
    manifest = []
    for item in items:
        extra = f' properties="{item.properties}"' if item.properties else ""
        extra += f' media-overlay="{item.media_overlay}"' if item.media_overlay else ""
        manifest.append(f'<item id="{item.id}" href="{xml_attribute(item.href)}" media-type="{item.media_type}"{extra}/>')
    direction = ' page-progression-direction="rtl"' if metadata.right_to_left else ""
    package_direction = ' dir="rtl"' if metadata.right_to_left else ""
    spine = "\n".join(f'<itemref idref="{item.id}"/>' for item in items if item.in_spine)
    language = xml_attribute(metadata.language)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="book-id" '
        f'xml:lang="{language}"{package_direction}>\n'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">\n' + "\n".join(lines) + "\n</metadata>\n"
        "<manifest>\n" + "\n".join(manifest) + "\n</manifest>\n"
        f"<spine{direction}>\n{spine}\n</spine>\n</package>\n"
    )
