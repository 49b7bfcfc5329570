"""The printed book: `render_book(BookContent) -> bytes` (a PDF with every script's fonts embedded) and its QR code."""

from webapp.book.content import BookBrand, BookContent, BookPage
from webapp.book.pdf import render_book
from webapp.book.qr import qr_png

__all__ = ["BookBrand", "BookContent", "BookPage", "qr_png", "render_book"]
