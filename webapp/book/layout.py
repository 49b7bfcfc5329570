"""Line breaking for book text in any script, and drawing the lines.

Text is never passed through a markup parser: it is split into runs of one font each and drawn with
`drawString`, so `<b>`, `</para>` or `&` in a story are just characters. Lines break at spaces, between
Chinese/Japanese characters (with the common kinsoku rules), and inside a word only when the word alone is
wider than the line. Widths are measured on the runs that will be drawn (reshaped Arabic, shaped Devanagari,
each character in the font that has it), so lines fit their box.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reportlab.lib.colors import Color
from reportlab.pdfgen.canvas import Canvas

from webapp.book.fonts import FontLibrary
from webapp.book.scripts import IDEOGRAPHIC_SCRIPTS, INVISIBLE_FORMAT, Script, clean_text, grapheme_clusters, script_of
from webapp.book.text_shaping import (
    ACTUAL_TEXT_END,
    actual_text_begin,
    contains_right_to_left,
    needs_shaping,
    paragraph_is_right_to_left,
    shaped,
    visual_order,
)

NO_LINE_START = frozenset(
    "、。，．・：；？！ー」』）】〕〉》〙〗〟’”｝〜ゝゞヽヾぁぃぅぇぉっゃゅょゎゕゖァィゥェォッャュョヮヵヶ!),.:;?]}%»›…‥"
)
NO_LINE_END = frozenset("「『（【〔〈《〘〖〝‘“｛([{«‹")
BREAKING_SPACES = frozenset(" \u200b\u3000")
_SPACES = "".join(BREAKING_SPACES)
_SHAPING_JOINERS = frozenset("\u200c\u200d")


@dataclass(frozen=True)
class GlyphRun:
    text: str  # in drawing order; a reportlab ShapedStr for shaped scripts
    font_name: str
    width: float
    embolden: bool = False  # bold wanted but the font has no bold face (IPAGothic, WenQuanYi): outline the glyphs


@dataclass(frozen=True)
class Line:
    text: str  # logical order, the text a reader copies
    runs: tuple[GlyphRun, ...]  # visual order, left to right
    width: float
    right_to_left: bool
    actual_text: bool  # drawn inside /ActualText marked content carrying `text`


@dataclass(frozen=True)
class TextBlock:
    lines: tuple[Line, ...]
    size: float
    leading: float

    @property
    def height(self) -> float:
        """From the top of the first line's tallest marks to the bottom of the last line's descenders."""
        if not self.lines:
            return 0.0
        return (len(self.lines) - 1) * self.leading + self.size * 1.45

    @property
    def width(self) -> float:
        return max((line.width for line in self.lines), default=0.0)


class TextSetter:
    """Sets text in one size and weight for a book's language, with the fonts of `library`."""

    def __init__(
        self, library: FontLibrary, *, size: float, language: str | None, bold: bool = False, leading: float = 1.5
    ) -> None:
        self.library = library
        self.size = size
        self.language = language
        self.bold = bold
        self.leading = size * leading

    def line(self, text: str, *, right_to_left: bool) -> Line:
        """Runs for one line of logical text, in drawing order."""
        drawn = visual_order(text, right_to_left=right_to_left)
        shaping = needs_shaping(drawn) and not right_to_left
        drawn = "".join(char for char in drawn if char not in INVISIBLE_FORMAT or (shaping and char in _SHAPING_JOINERS))
        pairs = self.library.assign(drawn, language=self.language, bold=self.bold)
        runs: list[GlyphRun] = []
        start = 0
        for index in range(1, len(pairs) + 1):
            if index == len(pairs) or pairs[index][1] is not pairs[start][1]:
                face = pairs[start][1]
                run_text, width = shaped("".join(char for char, _ in pairs[start:index]), face.name, self.size)
                runs.append(GlyphRun(run_text, face.name, width, self.bold and not face.bold))
                start = index
        if contains_right_to_left(drawn):
            return Line(_visible(text), tuple(runs), sum(run.width for run in runs), right_to_left, False)
        logical = "".join(char for char, _ in pairs)
        # Shaped ligatures have no Unicode value, and reportlab 5.1 writes characters beyond U+FFFF into the
        # ToUnicode map wrongly: such lines carry their text as /ActualText.
        actual_text = shaping or any(ord(char) > 0xFFFF for char in logical)
        return Line(logical, tuple(runs), sum(run.width for run in runs), right_to_left, actual_text)

    def width(self, text: str, *, right_to_left: bool = False) -> float:
        return self.line(text, right_to_left=right_to_left).width

    def block(self, text: str, *, width: float) -> TextBlock:
        """Wrap cleaned `text` to `width`: one or more lines per paragraph, an empty line between paragraphs."""
        lines: list[Line] = []
        for paragraph in (paragraph.strip(" ") for paragraph in clean_text(text).split("\n")):
            if paragraph:
                lines.extend(self._paragraph(paragraph, width))
            elif lines and lines[-1].runs:
                lines.append(Line("", (), 0.0, False, False))
        while lines and not lines[-1].runs:
            lines.pop()
        return TextBlock(tuple(lines), self.size, self.leading)

    def _paragraph(self, paragraph: str, width: float) -> list[Line]:
        right_to_left = paragraph_is_right_to_left(paragraph, self.language)
        widths: dict[str, float] = {}

        def measure(piece: str) -> float:
            if piece not in widths:
                widths[piece] = self.width(piece, right_to_left=right_to_left)
            return widths[piece]

        texts = fill_lines(break_opportunities(paragraph), measure, width)
        return [self.line(text, right_to_left=right_to_left) for text in texts]


def _visible(text: str) -> str:
    return "".join(char for char in text if char not in INVISIBLE_FORMAT)


def break_opportunities(paragraph: str) -> list[str]:
    """Split a paragraph into pieces a line may end after; each piece keeps the spaces that follow it."""
    pieces: list[str] = []
    current = ""
    for char in paragraph:
        if current and _may_break_between(current[-1], char):
            pieces.append(current)
            current = ""
        current += char
    if current:
        pieces.append(current)
    return pieces


def _may_break_between(before: str, after: str) -> bool:
    if after in BREAKING_SPACES:
        return False
    if before in BREAKING_SPACES:
        return True
    if after in NO_LINE_START or before in NO_LINE_END or script_of(after) is Script.inherited:
        return False
    return script_of(before) in IDEOGRAPHIC_SCRIPTS or script_of(after) in IDEOGRAPHIC_SCRIPTS


def fill_lines(pieces: list[str], measure: Callable[[str], float], width: float) -> list[str]:
    """Greedy line filling in logical order; a piece wider than a whole line is cut between grapheme clusters.

    Pieces are measured one by one (a line's width is the sum of its pieces, less the spaces it ends with),
    which keeps wrapping linear in the length of the text.
    """
    lines: list[str] = []
    current = ""
    current_width = 0.0  # including the spaces after the last piece
    for piece in pieces:
        body = piece.rstrip(_SPACES)
        body_width = measure(body) if body else 0.0
        if current and current_width + body_width > width:
            lines.append(current)
            current, current_width = "", 0.0
        if not current and body_width > width:
            head, piece = _cut_overlong(piece, measure, width)
            lines.extend(head)
            body = piece.rstrip(_SPACES)
            body_width = measure(body) if body else 0.0
        current += piece
        current_width += measure(piece) if piece != body else body_width
    lines.append(current)
    return [line.strip(_SPACES) for line in lines if line.strip(_SPACES)]


def _cut_overlong(text: str, measure: Callable[[str], float], width: float) -> tuple[list[str], str]:
    """Cut `text` into lines that fit; the last, partial one is returned to keep filling."""
    lines: list[str] = []
    current = ""
    for cluster in grapheme_clusters(text):
        if current and measure((current + cluster).rstrip(" ")) > width:
            lines.append(current)
            current = cluster.lstrip(" ")
        else:
            current += cluster
    return lines, current


def draw_block(
    canvas: Canvas, block: TextBlock, *, x: float, top: float, width: float, color: Color, align: str = "start"
) -> None:
    """Draw `block` in the box starting at (`x`, `top`); `align` is "start" (left, or right for RTL) or "center"."""
    canvas.setFillColor(color)
    canvas.setStrokeColor(color)
    canvas.setLineWidth(block.size * 0.035)
    baseline = top - block.size * 1.1
    for line in block.lines:
        if line.runs:
            pen = _line_start(line, x=x, width=width, align=align)
            if line.actual_text:
                canvas.addLiteral(actual_text_begin(line.text))
            for run in line.runs:
                canvas.setFont(run.font_name, block.size)
                canvas.drawString(pen, baseline, run.text, mode=2 if run.embolden else None)
                pen += run.width
            if line.actual_text:
                canvas.addLiteral(ACTUAL_TEXT_END)
        baseline -= block.leading


def _line_start(line: Line, *, x: float, width: float, align: str) -> float:
    """Where a line's first run starts: centred, flush right for a right-to-left line, else flush left."""
    if align == "center":
        return x + (width - line.width) / 2
    if line.right_to_left:
        return x + width - line.width
    return x


def fit_block(
    library: FontLibrary,
    text: str,
    *,
    width: float,
    height: float,
    max_size: float,
    min_size: float,
    language: str | None,
    bold: bool = False,
    leading: float = 1.5,
) -> TextBlock:
    """The largest size (down to `min_size`) at which `text` fits in `width` × `height`."""
    size = max_size
    while True:
        block = TextSetter(library, size=size, language=language, bold=bold, leading=leading).block(text, width=width)
        if block.height <= height or size <= min_size:
            return block
        size = max(min_size, round(size * 0.92, 2))
