"""Bounded records of the simulated car: its memory must not grow with run length.

:class:`MessageLog` keeps the first and the last names of a run (the set-up
and the wind-down, which tests and the demo read); charge-loop names in the
middle of a long run are dropped and counted. :func:`thin` halves a timeline
that reached its bound, so it still spans the whole run at a coarser step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["MESSAGE_HEAD", "MESSAGE_TAIL", "TIMELINE_MAX", "MessageLog", "thin"]

MESSAGE_HEAD = 200
MESSAGE_TAIL = 800
TIMELINE_MAX = 600

_T = TypeVar("_T")


class MessageLog:
    """Message names in order, at most ``head + tail`` of them (first ``head``, last ``tail``)."""

    def __init__(self, head: int = MESSAGE_HEAD, tail: int = MESSAGE_TAIL) -> None:
        self._head_max = head
        self._head: list[str] = []
        self._tail: deque[str] = deque(maxlen=tail)
        self.dropped = 0

    def append(self, name: str) -> None:
        if len(self._head) < self._head_max:
            self._head.append(name)
            return
        if len(self._tail) == self._tail.maxlen:
            self.dropped += 1
        self._tail.append(name)

    def extend(self, names: Iterable[str]) -> None:
        for name in names:
            self.append(name)

    def clear(self) -> None:
        self._head.clear()
        self._tail.clear()
        self.dropped = 0

    def __iter__(self) -> Iterator[str]:
        yield from self._head
        yield from self._tail

    def __len__(self) -> int:
        return len(self._head) + len(self._tail)


def thin(points: list[_T], limit: int = TIMELINE_MAX) -> bool:
    """Halve ``points`` in place when it holds ``limit`` or more (keeps the first and last).

    True when it thinned: the caller doubles its sampling interval.
    """
    if len(points) < limit:
        return False
    last = points[-1]
    del points[1::2]
    if points[-1] is not last:
        points.append(last)
    return True
