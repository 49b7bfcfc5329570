"""reportlab keeps registered fonts and HarfBuzz glyph tables in process-wide state, and both the PDF and the
EPUB's font subsets go through it: one book is drawn (or has its fonts assigned) at a time."""

from __future__ import annotations

import threading

RENDER_LOCK = threading.Lock()
