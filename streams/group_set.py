"""The pane groups one merged scope holds, (pane size, block start) pairs, as machine words,
with the merge partition the scope lives in.

The publisher keeps, per scope it publishes, which groups of its merged panes exist, so
that a tick reads only those (``publisher.KpiPublisher.index``). A scope with 25 hours of
minute panes has ~95 groups; as a ``set`` of tuples that cost ~145 bytes a group (the
tuple, its two ints, the set's slot): 23.8 MiB for 2,000 campaigns' scopes, the largest
Python allocation site of the memory benchmark (tracemalloc, ``bench/memtrace.py``),
and ~10x that at 10,000 campaigns. Here a group is one 4-byte word of an ``array``: a
block start is a multiple of the smallest group span (``GROUP_PANES`` panes of the
smallest size: 960 s), so the word is the start over that span, shifted left to make
room for the pane size's place in ``PANE_SIZES``. 32 bits reach block starts up to year
~18,000; a start outside that is refused, not wrapped. The partition sits in a slot of
the same object: at 100,000 campaigns a (partition, set) tuple per scope was 5.6 MiB
(the memory benchmark's by-type census).

Membership is a linear scan in C over a scope's few dozen words: cheaper than the set's
hashing of a fresh tuple at these sizes.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

from metrics.windows import PANE_SIZES

from .pane_groups import GROUP_PANES

Group = tuple[int, int]  # (pane size, block start)
_SIZE_BITS = 3
_SIZE_MASK = (1 << _SIZE_BITS) - 1
_SPAN = min(PANE_SIZES) * GROUP_PANES  # every block start is a multiple of it
_MAX_STEPS = (1 << (32 - _SIZE_BITS)) - 1
_PLACE = {size: i for i, size in enumerate(PANE_SIZES)}
if len(PANE_SIZES) > _SIZE_MASK + 1 or any(size % min(PANE_SIZES) for size in PANE_SIZES):
    raise ValueError("pane sizes must be multiples of the smallest, and at most 8")


def _pack(group: Group) -> int:
    size, block = group
    steps, rest = divmod(block, _SPAN)
    if rest:
        raise ValueError(f"block start {block} is not a multiple of {_SPAN}")
    if not 0 <= steps <= _MAX_STEPS:
        raise ValueError(f"block start {block} is outside 0..{_MAX_STEPS * _SPAN}")
    return steps << _SIZE_BITS | _PLACE[size]


def _unpack(word: int) -> Group:
    return PANE_SIZES[word & _SIZE_MASK], (word >> _SIZE_BITS) * _SPAN


class GroupSet:
    """A set of (pane size, block start), a 4-byte word each, and the scope's partition."""

    __slots__ = ("_words", "partition")

    def __init__(self, partition: int, groups: Iterable[Group] = ()) -> None:
        self.partition = partition
        self._words = array("I")
        for group in groups:
            self.add(group)

    def add(self, group: Group) -> None:
        word = _pack(group)
        if word not in self._words:
            self._words.append(word)

    def __contains__(self, group: object) -> bool:
        return isinstance(group, tuple) and _pack(group) in self._words

    def __iter__(self) -> Iterator[Group]:
        return (_unpack(word) for word in self._words)

    def __len__(self) -> int:
        return len(self._words)

    def discard_all(self, groups: Iterable[Group]) -> None:
        gone = {_pack(group) for group in groups}
        if gone:
            self._words = array("I", [w for w in self._words if w not in gone])
