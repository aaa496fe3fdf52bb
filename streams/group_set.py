"""The pane groups one merged scope holds, (pane size, block start) pairs, as machine words.

The publisher keeps, per scope it publishes, which groups of its merged panes exist, so
that a tick reads only those (``publisher.KpiPublisher.index``). A scope with 25 hours of
minute panes has ~95 groups; as a ``set`` of tuples that cost ~145 bytes a group (the
tuple, its two ints, the set's slot): 23.8 MiB for 2,000 campaigns' scopes, the largest
Python allocation site of the memory benchmark (tracemalloc, ``bench/memtrace.py``),
and ~10x that at 10,000 campaigns. Here a group is one 8-byte word of an ``array``: a
block start is a multiple of its group's span (``GROUP_PANES`` panes of at least a
minute: 960 s), so its low 6 bits are free for the pane size's place in ``PANE_SIZES``.

Membership is a linear scan in C over a scope's few dozen words: cheaper than the set's
hashing of a fresh tuple at these sizes.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

from metrics.windows import PANE_SIZES

from .pane_groups import GROUP_PANES

Group = tuple[int, int]  # (pane size, block start)
_SIZE_BITS = 6
_SIZE_MASK = (1 << _SIZE_BITS) - 1
_PLACE = {size: i for i, size in enumerate(PANE_SIZES)}
if len(PANE_SIZES) > _SIZE_MASK + 1 or min(PANE_SIZES) * GROUP_PANES % (1 << _SIZE_BITS):
    raise ValueError("pane sizes do not leave a block start's low bits free")


def _pack(group: Group) -> int:
    size, block = group
    if block & _SIZE_MASK:
        raise ValueError(f"block start {block} is not a multiple of {1 << _SIZE_BITS}")
    return block | _PLACE[size]


def _unpack(word: int) -> Group:
    return PANE_SIZES[word & _SIZE_MASK], word & ~_SIZE_MASK


class GroupSet:
    """A set of (pane size, block start), a word each."""

    __slots__ = ("_words",)

    def __init__(self, groups: Iterable[Group] = ()) -> None:
        self._words = array("q")
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
            self._words = array("q", [w for w in self._words if w not in gone])
