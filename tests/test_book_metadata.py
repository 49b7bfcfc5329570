# ruff: noqa: F811 - the `core` fixture is imported, and tests take it by name
"""What a book says about itself: its PDF and EPUB metadata come from the story (the reader's idea, else its first
sentence), never from the photo's caption, which may describe a person or be no language at all; and its last
page says when the pictures are the photo restyled rather than painted from the words."""

from __future__ import annotations

import re
import zipfile

import pytest
from pypdf import PdfReader

from shared.profiles import RESTYLE
from tests.test_pipeline_core import Core, core  # noqa: F401 - the in-process pipeline fixture
from webapp.jobs.book_assembly import RESTYLED_NOTE
from webapp.jobs.models import JobRecord, JobStatus
from webapp.jobs.progress import Artifacts
from webapp.story.options import StoryOptions

CAPTIONS = {
    "not language": "\ufffd\ufffd q\ufffdzk \ufffd\ufffd\ufffd xv",
    "a person's photo": "A woman with curly hair sits at a kitchen table at 14 Elm Street.",
}


def _metadata(core: Core, record: JobRecord) -> tuple[str, str, str]:
    """The PDF's Subject, the EPUB's dc:description, and the EPUB's last page."""
    pdf, epub = core.stories.file(record.id, Artifacts.PDF), core.stories.file(record.id, Artifacts.EPUB)
    assert pdf is not None and epub is not None
    subject = str(PdfReader(pdf).metadata.get("/Subject", ""))
    with zipfile.ZipFile(epub) as book:
        package = next(book.read(name).decode() for name in book.namelist() if name.endswith(".opf"))
        end = next(book.read(name).decode() for name in book.namelist() if name.endswith("end.xhtml"))
    match = re.search(r"<dc:description[^>]*>(.*?)</dc:description>", package, re.DOTALL)
    return subject, match.group(1) if match else "", end


@pytest.mark.parametrize("caption", CAPTIONS.values(), ids=CAPTIONS.keys())
async def test_metadata_tells_the_story_never_the_photos_caption(core: Core, caption: str) -> None:
    core.captioner.caption_text = caption
    with_idea = await core.made(StoryOptions(pages=2, narrate=False, idea="a lantern that sings"))
    without = await core.made(StoryOptions(pages=2, narrate=False))
    assert with_idea.status == without.status == JobStatus.done

    words = [word for word in re.findall(r"\w{4,}", caption)]
    for record, about in ((with_idea, "a lantern that sings"), (without, None)):
        subject, description, _ = _metadata(core, record)
        opening = core.stories.progress(record.id).words
        assert opening is not None
        expected = about or opening.pages[0].split(".")[0]
        assert subject.startswith(expected) and description.startswith(expected)
        assert "\ufffd" not in subject + description
        assert not any(word in subject or word in description for word in words), (subject, description)


async def test_the_last_page_says_when_the_pictures_are_the_photo_restyled(core: Core) -> None:
    painted = await core.made(StoryOptions(pages=1, narrate=False))
    core.illustrator.model = RESTYLE
    restyled = await core.made(StoryOptions(pages=1, narrate=False))

    assert RESTYLED_NOTE not in _metadata(core, painted)[2]
    assert RESTYLED_NOTE in _metadata(core, restyled)[2]
    pdf = core.stories.file(restyled.id, Artifacts.PDF)
    assert pdf is not None
    last = PdfReader(pdf).pages[-1].extract_text() or ""
    assert "photo restyled" in " ".join(last.split())
