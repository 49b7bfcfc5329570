"""The public addresses of a bound book, all under its unguessable token: the reader (the QR code's target), the
PDF, the EPUB, the audiobook, and the pictures and page audio the reader loads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BookLinks:
    public_url: str
    token: str

    @property
    def base(self) -> str:
        return self.public_url.rstrip("/")

    @property
    def reader(self) -> str:
        return f"{self.base}/read/{self.token}"

    @property
    def pdf(self) -> str:
        return f"{self.base}/books/{self.token}.pdf"

    @property
    def epub(self) -> str:
        return f"{self.base}/books/{self.token}.epub"

    @property
    def audiobook(self) -> str:
        return f"{self.base}/books/{self.token}.m4b"

    def file(self, name: str) -> str:
        """A picture or a page's audio, e.g. `page-03.png`, `page-03.mp3`."""
        return f"{self.base}/books/{self.token}/{name}"


def book_url(public_url: str, token: str) -> str:
    return BookLinks(public_url, token).pdf
