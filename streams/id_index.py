"""A compact map of 64-bit identity digests to 64-bit packed markers.

The dedup index remembers every event_id of the dedup horizon: 1.5 million ids in the
memory benchmark. As a dict of strings to tuples that cost ~430 bytes per id; here an id
is two machine words in two ``array('Q')`` (open addressing, linear probing, kept between
35 % and 70 % full), about 32 bytes per id. Lookups are a few Python operations each,
far below the rest of an event's cost.

Digests are BLAKE2b-64 of the identity, stable across processes so that the changelog
records can hold digests instead of ids. Two distinct ids of one partition share a digest
with probability about n² / 2⁶⁵: ~1e-7 at the default cap of 2,000,000 ids; such a pair
would count as one event (README, "Duplicates").
"""

from __future__ import annotations

from array import array
from hashlib import blake2b

EMPTY, DELETED = 0, 1  # digests never take these values (see ``identity_digest``)
MIN_SLOTS = 1024
MAX_FILL = 0.7
REFILL = 0.525  # fill after a resize at most: the next one is ≥ 17.5 % of the slots away

Marker = tuple[int, int, int]  # (source topic index, offset, index in the message)
TOPIC_BITS, INDEX_BITS = 4, 16  # 16 source topics, 65,536 events a message (10,000 allowed)
OFFSET_LIMIT = 1 << (64 - TOPIC_BITS - INDEX_BITS)


def identity_digest(identity: str) -> int:
    digest = int.from_bytes(blake2b(identity.encode(), digest_size=8).digest(), "little")
    return digest if digest > DELETED else digest + 2


def pack_marker(marker: Marker) -> int:
    topic, offset, index = marker
    if not (0 <= topic < 1 << TOPIC_BITS and 0 <= index < 1 << INDEX_BITS
            and 0 <= offset < OFFSET_LIMIT):  # fmt: skip
        raise ValueError(f"marker {marker} does not fit the dedup index")
    return (offset << (TOPIC_BITS + INDEX_BITS)) | (index << TOPIC_BITS) | topic


def unpack_marker(packed: int) -> Marker:
    topic = packed & ((1 << TOPIC_BITS) - 1)
    index = (packed >> TOPIC_BITS) & ((1 << INDEX_BITS) - 1)
    return topic, packed >> (TOPIC_BITS + INDEX_BITS), index


class IdIndex:
    """digest → packed marker; ``remove`` only forgets an entry still holding the value
    it is asked to forget (a newer record of the same id keeps it)."""

    def __init__(self, slots: int = MIN_SLOTS) -> None:
        self._allocate(slots)

    def _allocate(self, slots: int) -> None:
        self._keys = array("Q", bytes(8 * slots))
        self._values = array("Q", bytes(8 * slots))
        self._mask = slots - 1
        self._used = 0  # live entries
        self._filled = 0  # live entries and DELETED marks

    def __len__(self) -> int:
        return self._used

    @property
    def slots(self) -> int:
        return self._mask + 1

    def _find(self, digest: int) -> int:
        """The slot holding ``digest``, or -1."""
        keys, mask = self._keys, self._mask
        i = digest & mask
        while True:
            key = keys[i]
            if key == digest:
                return i
            if key == EMPTY:
                return -1
            i = (i + 1) & mask

    def get(self, digest: int) -> int | None:
        i = self._find(digest)
        return None if i < 0 else self._values[i]

    def __contains__(self, digest: int) -> bool:
        return self._find(digest) >= 0

    def put(self, digest: int, value: int) -> None:
        i = self._find(digest)
        if i >= 0:
            self._values[i] = value
            return
        if (self._filled + 1) > MAX_FILL * self.slots:
            self._resize()
        keys, mask = self._keys, self._mask
        i = digest & mask
        while keys[i] > DELETED:
            i = (i + 1) & mask
        if keys[i] == EMPTY:
            self._filled += 1
        keys[i] = digest
        self._values[i] = value
        self._used += 1

    def remove(self, digest: int, value: int) -> bool:
        i = self._find(digest)
        if i < 0 or self._values[i] != value:
            return False
        self._keys[i] = DELETED
        self._values[i] = 0
        self._used -= 1
        return True

    def items(self) -> list[tuple[int, int]]:
        return [
            (key, value) for key, value in zip(self._keys, self._values, strict=True) if key > 1
        ]

    def _resize(self) -> None:
        """Re-inserts the live entries (dropping DELETED marks) into the smallest table
        they leave at most ``REFILL`` full: twice the slots when live entries filled it,
        the same when DELETED marks did. (It once asked for at most half of ``MAX_FILL``,
        which a table just grown from 70 % full misses by one entry: every growth was 4x,
        and 250,000 ids sat in 1,048,576 slots, 16 MiB instead of 8.) Reads the old arrays
        in place: a list of the entries would add ~120 bytes an id to the peak memory."""
        old_keys, old_values, used = self._keys, self._values, self._used
        slots = MIN_SLOTS
        while used + 1 > REFILL * slots:
            slots *= 2
        self._allocate(slots)
        keys, values, mask = self._keys, self._values, self._mask
        for digest, value in zip(old_keys, old_values, strict=True):
            if digest > DELETED:
                i = digest & mask
                while keys[i] != EMPTY:
                    i = (i + 1) & mask
                keys[i] = digest
                values[i] = value
        self._used = self._filled = used
