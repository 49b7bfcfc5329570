"""When a book's pictures go to the image service: in groups, so that the pictures one model call can hold share it.

The image service paints one call at a time, and a call holds up to `per_call` pictures (its FABULA_MAX_BATCH_SIZE)
in little more than the time of one. A book's pictures become known one beat at a time while its outline streams.
Sent the moment each is known, they queue behind the busy device and go in whatever group is waiting when it frees
up; the last beat then typically arrives just after the device has started the call before it, and its picture
waits a whole call more (measured with the benchmark's stand-ins: four calls for nine pictures, the last beat
0.15 s late for the third call, the book 2 s longer).

The rules hold a picture back only while a call of this book is being painted (it would queue behind that call
anyway), or, briefly, for the book's last beats:
- A picture goes at once when none of the book's pictures is at the service: page 1's picture (the photo's own
  scene, what the reader sees first) goes alone the moment the caption is back.
- While a group is at the service, newly known pictures wait in the book; they would queue behind that call
  anyway. When the first picture of the group is back (the device has finished that call), the waiting pictures
  go together as the next group.
- Near the end of the outline the waiting pictures wait for the rest, when the rest and they fit one call and the
  outline's pace says the rest arrives sooner than what a call costs beyond its pictures (`call_overhead`): sent
  now, the rest would need a call of its own after this one, and the book's last picture would be that overhead
  later; waiting costs only the wait. They wait at most that overhead. On a device whose calls cost about the
  same for one picture as for eight (the case batching is for) that is most of a call; on one whose time grows
  with every picture it is next to nothing, and the pictures go at once.

What this gives up: with several replicas of the image service, one book's groups go one at a time rather than
side by side on two replicas, and the pictures waiting in the book are not in the service's queue-time metric.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from webapp.jobs.progress import COVER
from webapp.story.plan import Character

Paint = Callable[[int, str, list[Character]], Awaitable[None]]  # page, scene, characters


class PictureGroups:
    """Each picture a task from the moment its scene is known (`tasks`), painted when its group is sent.

    `expected` names every picture the book will ask for (its pages and the cover): the ones not known yet are
    "the rest". `beat()` is told when a beat of the streamed outline arrives, for the outline's pace.
    """

    def __init__(
        self, paint: Paint, expected: Iterable[int], *, per_call: int, clock: Callable[[], float] = time.monotonic,
        later_wait_for: asyncio.Event | None = None,
    ) -> None:
        """`later_wait_for`: every picture but page 1's waits until it is set (page 1 done first, on a CPU that the
        pictures share with the writer)."""
        self._paint = paint
        self._later_wait_for = later_wait_for
        self._gate_watch: asyncio.Future[None] | None = None
        self._expected = set(expected)
        self._per_call = max(1, per_call)
        self._clock = clock
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._sent: dict[int, asyncio.Event] = {}
        self._waiting: list[int] = []
        self._out: set[int] = set()  # the latest group, while none of it is back
        self._sent_at = 0.0
        self._calls: list[tuple[int, float]] = []  # (pictures, seconds) of each group's call, sent to first back
        self._beats: list[float] = []
        self._deciding: asyncio.Handle | None = None
        self._holding: asyncio.TimerHandle | None = None
        self._closed = False

    def want(self, page: int, scene: str, characters: list[Character]) -> None:
        """The picture's scene is known: it goes with the next group (pictures known together go together)."""
        if page in self.tasks:
            return
        self._sent[page] = asyncio.Event()
        self.tasks[page] = asyncio.ensure_future(self._picture(page, scene, characters))
        self._waiting.append(page)
        self._decide_soon()

    def beat(self) -> None:
        self._beats.append(self._clock())

    def close(self) -> None:
        """Cancel every picture not painted yet, and send nothing more."""
        self._closed = True
        for handle in (self._deciding, self._holding, self._gate_watch):
            if handle is not None:
                handle.cancel()
        for task in self.tasks.values():
            task.cancel()

    async def _picture(self, page: int, scene: str, characters: list[Character]) -> None:
        await self._sent[page].wait()
        try:
            await self._paint(page, scene, characters)
        finally:
            if page in self._out:  # the first of its group back: the device has finished the call that held it
                self._calls.append((min(len(self._out), self._per_call), self._clock() - self._sent_at))
                self._out.clear()
                self._decide_soon()

    def _decide_soon(self) -> None:
        """Decide once the pictures known in this turn of the event loop are all waiting (a resumed outline gives
        many at once)."""
        if self._deciding is None and not self._closed:
            self._deciding = asyncio.get_running_loop().call_soon(self._decide)

    def _decide(self) -> None:
        self._deciding = None
        if self._closed or self._out or not self._waiting:
            return
        if self._later_wait_for is not None and not self._later_wait_for.is_set():
            if 1 in self._waiting:
                self._send(only=[1])
            elif self._gate_watch is None:
                self._gate_watch = asyncio.ensure_future(self._decide_when_page_one_is_done(self._later_wait_for))
            return
        hold = self._hold_seconds()
        if hold is None:
            self._send()
        elif self._holding is None:
            self._holding = asyncio.get_running_loop().call_later(hold, self._send)

    def _hold_seconds(self) -> float | None:
        """How long the waiting pictures wait for the rest; None: they go now."""
        rest = self._expected - set(self.tasks)
        if not rest or not self._calls or len(self._waiting) + len(rest) > self._per_call:
            return None
        beats = len(rest - {COVER})  # a cover not known yet comes when the outline is complete, with its last beat
        due = 0.0
        if beats:
            if len(self._beats) < 2:
                return None  # no pace to go by
            pace = (self._beats[-1] - self._beats[0]) / (len(self._beats) - 1)
            due = max(0.0, beats * pace - (self._clock() - self._beats[-1]))
        saved = call_overhead(self._calls)
        return saved if due < saved else None

    async def _decide_when_page_one_is_done(self, done: asyncio.Event) -> None:
        await done.wait()
        self._decide_soon()

    def _send(self, only: list[int] | None = None) -> None:
        if self._holding is not None:
            self._holding.cancel()
            self._holding = None
        if self._closed or not self._waiting:
            return
        group = self._waiting if only is None else [page for page in self._waiting if page in only]
        self._waiting = [page for page in self._waiting if page not in group]
        self._out, self._sent_at = set(group), self._clock()
        for page in group:
            self._sent[page].set()


def call_overhead(calls: list[tuple[int, float]]) -> float:
    """What one call costs beyond its pictures, from the (pictures, seconds) of the calls seen: with calls of two
    sizes, the part of a call's time that does not grow with its pictures; with one size, half its time (how it
    splits is not known yet)."""
    (fewest, fewest_seconds), (most, most_seconds) = min(calls), max(calls)
    if most == fewest:
        return fewest_seconds / 2
    per_picture = max(0.0, (most_seconds - fewest_seconds) / (most - fewest))
    return max(0.0, fewest_seconds - per_picture * fewest)
