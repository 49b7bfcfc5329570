"""The phone reader at `/read/<token>`: the QR code's target, a book read aloud one page at a time."""

from webapp.reader.model import ReaderBook, ReaderPage
from webapp.reader.routes import BookLoader, reader_router

__all__ = ["BookLoader", "ReaderBook", "ReaderPage", "reader_router"]
