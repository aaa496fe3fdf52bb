"""A seeded fuzzer of hostile Kafka messages, each with the dead letters it must produce.

Every generated message carries one defect chosen from SPEC §1 "Bad input" (broken UTF-8,
invalid JSON, NaN/Infinity literals, deep nesting, huge strings and numbers, wrong types,
10 MB values, arrays of 100,000 events, empty values, non-object members, ...), so its
expected ``error.reason`` is known from the construction, not from the product's code.
Bad elements of a batch sit between valid neighbours, which the scenario's ledger counts:
one bad event must never drop them. ``expected`` pairs each reason with the exact bytes
the dead letter must hold (the message unchanged, the element re-encoded alone, or a
4 KiB prefix of a message over 1 MiB).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from .scenario import HORIZON, Scenario

MIB = 1024 * 1024
NEIGHBOUR_CAMPAIGN, NEIGHBOUR_CHANNEL = "hostile-neighbours", "display"
SUFFIX = {"click": "clicks", "impression": "impressions", "open": "opens", "signup": "signups",
          "lead_stage": "lead-stages", "purchase": "purchases", "spend": "spend"}  # fmt: skip
INVALID_UTF8 = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                b"\x80", b"\xc3", b"\xe2\x82", b"\xf4\x90\x80\x80"]  # fmt: skip


def digest(raw: bytes) -> str:
    return hashlib.sha1(raw).hexdigest()


@dataclass
class Bad:
    suffix: str
    key: bytes | None
    value: bytes | None
    expected: list[tuple[str, str]]  # (reason, digest of the dead letter's value)
    label: str


@dataclass
class Hostile:
    messages: list[Bad] = field(default_factory=list)
    neighbours: int = 0

    @property
    def expected(self) -> Counter[tuple[str, str]]:
        return Counter(pair for m in self.messages for pair in m.expected)

    @property
    def reasons(self) -> Counter[str]:
        return Counter(reason for m in self.messages for reason, _ in m.expected)

    @property
    def labels(self) -> Counter[str]:
        return Counter(m.label for m in self.messages)


class Fuzzer:
    def __init__(self, rng: random.Random, sc: Scenario, now: float) -> None:
        self.rng, self.sc, self.now = rng, sc, now
        self.ts = int(now) - 600  # an int: encodings keep one length, the stream one seed
        self.out = Hostile()
        self.serial = 0

    # -- building blocks --------------------------------------------------------------
    def eid(self) -> str:
        self.serial += 1
        return f"hostile-{self.serial}"

    def valid(self, kind: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"event_id": self.eid(), "ts": self.ts,
                               "campaign_id": "hostile", "channel": "email"}  # fmt: skip
        if kind == "impression":
            doc["count"] = 3
        if kind in ("signup", "lead_stage"):
            doc["lead_id"] = f"hl-{self.serial}"
        if kind == "lead_stage":
            doc["stage"] = "mql"
        if kind in ("purchase", "spend"):
            doc.update(amount="10.00", currency="EUR")
        return doc

    def neighbour(self) -> dict[str, Any]:
        """A valid click the ledger counts: it rides in a batch next to bad events."""
        ts = self.ts
        self.sc.count(NEIGHBOUR_CAMPAIGN, NEIGHBOUR_CHANNEL, ts, {"clicks": 1})
        self.sc.valid_events += 1
        self.out.neighbours += 1
        return {"event_id": self.eid(), "ts": ts, "campaign_id": NEIGHBOUR_CAMPAIGN,
                "channel": NEIGHBOUR_CHANNEL}  # fmt: skip

    def key(self) -> bytes | None:
        return None if self.rng.random() < 0.3 else b"hostile"  # null keys too

    def single(self, label: str, kind: str, value: bytes | None, reason: str) -> None:
        """One message, one dead letter holding the message unchanged (a prefix over 1 MiB)."""
        raw = value or b""
        kept = raw[:4096] if len(raw) > MIB else raw
        key = self.key() if value is not None else b"hostile"  # Kafka needs a key or a value
        self.out.messages.append(Bad(SUFFIX[kind], key, value, [(reason, digest(kept))], label))

    def batch(self, label: str, bad: list[tuple[bytes, str]]) -> None:
        """Bad elements (their exact encoding, reason) shuffled among valid click neighbours."""
        parts: list[tuple[bytes, str | None]] = [(e, r) for e, r in bad]
        parts += [(orjson.dumps(self.neighbour()), None) for _ in range(self.rng.randint(1, 4))]
        self.rng.shuffle(parts)
        value = b"[" + b",".join(p for p, _ in parts) + b"]"
        expected = [(r, digest(p)) for p, r in parts if r is not None]
        self.out.messages.append(Bad("clicks", self.key(), value, expected, label))

    # -- the defects ------------------------------------------------------------------
    def field_defect(self) -> tuple[str, dict[str, Any], str]:
        """A valid event with exactly one field made wrong; the reason that must follow."""
        kind, name, value, reason = self.rng.choice(FIELD_DEFECTS)
        doc = self.valid(kind)
        if value is DROP:
            doc.pop(name)
        else:
            doc[name] = value(self) if callable(value) else value
        return kind, doc, reason

    def run(self, count: int) -> Hostile:
        makers: list[tuple[float, Callable[[], None]]] = [
            (0.40, self.one_bad_field),
            (0.15, self.bad_fields_in_a_batch),
            (0.12, self.broken_utf8),
            (0.12, self.broken_json),
            (0.08, self.not_objects),
            (0.05, self.deep),
            (0.04, self.sizes),
        ]
        weights = [w for w, _ in makers]
        while len(self.out.messages) < count:
            self.rng.choices([m for _, m in makers], weights)[0]()
        self.giants()
        return self.out

    def one_bad_field(self) -> None:
        kind, doc, reason = self.field_defect()
        self.single(f"field:{reason}", kind, orjson.dumps(doc), reason)

    def bad_fields_in_a_batch(self) -> None:
        bad = []
        for _ in range(self.rng.randint(1, 4)):
            doc = self.valid("click")
            name, value, reason = self.rng.choice(CLICK_DEFECTS)
            doc[name] = value
            bad.append((orjson.dumps(doc), reason))
        if self.rng.random() < 0.5:  # non-object members
            bad += [(orjson.dumps(v), "not_an_object") for v in self.rng.sample(SCALARS, 2)]
        self.batch("batch:bad members", bad)

    def broken_utf8(self) -> None:
        kind = self.rng.choice(list(SUFFIX))
        if self.rng.random() < 0.8:
            base = orjson.dumps(self.valid(kind) if self.rng.random() < 0.5 else [self.valid(kind)])
        else:  # random binary, with a byte that is never UTF-8
            base = self.rng.randbytes(self.rng.randint(0, 2000)) + b"\xff"
        pos = self.rng.randint(0, len(base))
        value = base[:pos] + self.rng.choice(INVALID_UTF8) + base[pos:]
        self.single("utf8", kind, value, "invalid_utf8")

    def broken_json(self) -> None:
        kind = self.rng.choice(list(SUFFIX))
        good = orjson.dumps(self.valid(kind))
        choice = self.rng.randrange(9)
        if choice == 0:
            value: bytes | None = good[: self.rng.randrange(len(good))]  # truncated
        elif choice == 1:
            value = good.replace(b'"ts":', self.rng.choice([b'"ts":NaN,"x":', b'"ts":Infinity,"x":',
                                                            b'"ts":-Infinity,"x":']))  # fmt: skip
        elif choice == 2:
            value = good.replace(b'"ts":', b'"ts":1e400,"x":')  # overflows a double
        elif choice == 3:
            value = good[:-1] + self.rng.choice([b",}", b"} x", b"}}", b"/*c*/}", b',"a"}'])
        elif choice == 4:
            value = good.replace(b'"', b"'")
        elif choice == 5:
            value = self.rng.choice([None, b"", b"  ", b"\n", b"\xef\xbb\xbf" + good])
        elif choice == 6:
            value = good.replace(b'"campaign_id":"hostile"', b'"campaign_id":"\\ud800"')
        elif choice == 7:  # nested past the parser's 1,024 levels
            depth = self.rng.randint(1025, 3000)
            value = b"[" * depth + b"]" * depth
        else:
            value = good.replace(b'"hostile"', b'"ho\x01stile"')  # control character
        self.single("json", kind, value, "invalid_json")

    def not_objects(self) -> None:
        if self.rng.random() < 0.3:
            self.single("empty batch", "click", self.rng.choice([b"[]", b" [ ] ", b"[\n]"]),
                        "empty_batch")  # fmt: skip
            return
        scalars = [v for v in SCALARS if v != []]  # "[]" is an empty batch
        value = orjson.dumps(self.rng.choice([*scalars, "x" * self.rng.randint(1, 3000)]))
        self.single("scalar", self.rng.choice(list(SUFFIX)), value, "not_an_object")

    def deep(self) -> None:
        depth = self.rng.randint(255, 1020)
        shape = self.rng.choice([(b"[", b"]", b""), (b'{"a":', b"}", b"1")])
        inner = shape[0] * depth + shape[2] + shape[1] * depth
        event = b'{"event_id":"%s","ts":%d,"campaign_id":"hostile","x":%s}' % (
            self.eid().encode(), self.ts, inner)  # fmt: skip
        if self.rng.random() < 0.5:
            self.single("deep", "click", event, "too_deep")
        else:
            self.batch("deep in a batch", [(event, "too_deep")])

    def sizes(self) -> None:
        choice = self.rng.randrange(4)
        if choice == 0:  # one event over 64 KiB
            doc = {**self.valid("click"), "pad": "x" * self.rng.randint(66_000, 150_000)}
            self.single("over 64 KiB", "click", orjson.dumps(doc), "too_large")
        elif choice == 1:
            doc = {**self.valid("click"), "pad": "y" * self.rng.randint(66_000, 100_000)}
            self.batch("64 KiB element", [(orjson.dumps(doc), "too_large")])
        elif choice == 2:  # a huge string or number where an id belongs
            doc = self.valid("click")
            doc[self.rng.choice(["event_id", "campaign_id", "user_id"])] = "z" * 60_000
            self.single("huge id", "click", orjson.dumps(doc), "invalid_value")
        else:  # a batch of tiny elements over the 10,000 cap
            n = self.rng.randint(10_001, 30_000)
            self.single("many elements", "click", b"[" + b",".join([b"{}"] * n) + b"]",
                        "too_large")  # fmt: skip

    def giants(self) -> None:
        """The few very large messages, sent on top: 10 MB values, 100,000-event arrays,
        and messages right at the 1 MiB limit (dead-lettered unchanged)."""
        for _ in range(3):
            doc = {**self.valid("click"), "pad": "g" * 10_000_000}
            self.single("10 MB value", "click", orjson.dumps(doc), "too_large")
        for _ in range(2):
            events = [{**self.valid("click"), "event_id": f"big-{i}"} for i in range(100_000)]
            self.single("100,000 events", "click", orjson.dumps(events), "too_large")
        for _ in range(3):
            value = b"{" + self.rng.randbytes(16).hex().encode() * (MIB // 32)
            self.single("1 MiB invalid", "spend", value[:MIB], "invalid_json")


DROP = object()
SCALARS: list[Any] = [0, -1, 1.5, 2**64 - 1, 1e308, True, False, None, "", "click", []]
CLICK_DEFECTS: list[tuple[str, Any, str]] = [
    ("event_id", 7, "wrong_type"), ("ts", "yesterday", "invalid_ts"),
    ("campaign_id", "no spaces", "invalid_value"), ("type", "open", "type_mismatch"),
    ("ts", 0, "ts_too_old"), ("channel", [], "wrong_type"), ("event_id", "", "invalid_value"),
]  # fmt: skip
FIELD_DEFECTS: list[tuple[str, str, Any, str]] = [
    # missing required fields (absent or null)
    ("click", "event_id", DROP, "missing_field"), ("click", "ts", None, "missing_field"),
    ("impression", "campaign_id", DROP, "missing_field"), ("open", "ts", DROP, "missing_field"),
    ("signup", "lead_id", DROP, "missing_field"), ("lead_stage", "stage", None, "missing_field"),
    ("lead_stage", "lead_id", DROP, "missing_field"), ("spend", "amount", DROP, "missing_field"),
    ("purchase", "currency", DROP, "missing_field"),
    ("spend", "campaign_id", None, "missing_field"),
    # wrong JSON types, including deep structures where a string belongs
    ("click", "event_id", 12345, "wrong_type"), ("click", "event_id", True, "wrong_type"),
    ("click", "event_id", ["e"], "wrong_type"), ("open", "event_id", {"id": "e"}, "wrong_type"),
    ("click", "event_id", lambda f: _nest(f.rng.randint(2, 200)), "wrong_type"),
    ("click", "ts", True, "wrong_type"), ("click", "ts", [1], "wrong_type"),
    ("click", "ts", {"s": 1}, "wrong_type"), ("impression", "campaign_id", 42, "wrong_type"),
    ("click", "channel", 3, "wrong_type"), ("click", "user_id", 3, "wrong_type"),
    ("signup", "lead_id", 9, "wrong_type"), ("lead_stage", "stage", 2, "wrong_type"),
    ("spend", "amount", True, "wrong_type"), ("purchase", "amount", [1], "wrong_type"),
    ("spend", "amount", {"v": 1}, "wrong_type"), ("spend", "currency", 978, "wrong_type"),
    ("impression", "count", 1.5, "wrong_type"), ("impression", "count", "5", "wrong_type"),
    ("impression", "count", True, "wrong_type"),
    ("click", "type", 1, "wrong_type"), ("purchase", "customer_id", 5, "wrong_type"),
    ("purchase", "order_id", [], "wrong_type"),
    # values out of their domain: huge strings and numbers
    ("click", "event_id", "", "invalid_value"), ("click", "event_id", "e" * 129, "invalid_value"),
    ("click", "event_id", lambda f: "e" * f.rng.randint(129, 60_000), "invalid_value"),
    ("click", "campaign_id", "sp ace", "invalid_value"),
    ("click", "campaign_id", "c\u00e9", "invalid_value"),
    ("click", "campaign_id", "c\n", "invalid_value"),
    ("click", "campaign_id", "c" * 129, "invalid_value"),
    ("lead_stage", "stage", "vip", "invalid_value"),
    ("lead_stage", "stage", "MQL", "invalid_value"),
    ("impression", "count", 0, "invalid_value"), ("impression", "count", -1, "invalid_value"),
    ("impression", "count", 1_000_001, "invalid_value"),
    ("impression", "count", 2**64 - 1, "invalid_value"),
    ("impression", "count", 1e20, "invalid_value"),  # a whole number (JSON Schema's integer)
    ("signup", "lead_id", "", "invalid_value"), ("click", "user_id", "u" * 129, "invalid_value"),
    # the type field names another topic
    ("click", "type", "open", "type_mismatch"), ("spend", "type", "purchase", "type_mismatch"),
    ("impression", "type", "IMPRESSION", "type_mismatch"),
    # money
    ("spend", "amount", -1, "invalid_amount"), ("spend", "amount", "-0.01", "invalid_amount"),
    ("spend", "amount", "NaN", "invalid_amount"),
    ("purchase", "amount", "Infinity", "invalid_amount"),
    ("spend", "amount", "-inf", "invalid_amount"), ("spend", "amount", "abc", "invalid_amount"),
    ("spend", "amount", "", "invalid_amount"), ("spend", "amount", "1e13", "invalid_amount"),
    ("spend", "amount", 1e300, "invalid_amount"), ("spend", "amount", "1_000", "invalid_amount"),
    ("purchase", "amount", "\u0661\u0662", "invalid_amount"),
    ("spend", "amount", "1e999999999", "invalid_amount"),
    ("spend", "amount", 2**64 - 1, "invalid_amount"),
    ("spend", "currency", "XXX", "unknown_currency"), ("spend", "currency", "", "unknown_currency"),
    ("purchase", "currency", "euro", "unknown_currency"),
    ("spend", "currency", "\u20ac", "unknown_currency"),
    ("spend", "currency", "C" * 5000, "unknown_currency"),
    # time
    ("click", "ts", "yesterday", "invalid_ts"), ("click", "ts", "", "invalid_ts"),
    ("click", "ts", "2026-13-01T00:00:00Z", "invalid_ts"),
    ("click", "ts", "2026-01-01T00:00:00", "invalid_ts"), ("click", "ts", -1, "invalid_ts"),
    ("click", "ts", -1e300, "invalid_ts"), ("click", "ts", "NaN", "invalid_ts"),
    ("click", "ts", "1800000000", "invalid_ts"), ("click", "ts", "t" * 50_000, "invalid_ts"),
    ("click", "ts", lambda f: f.now + 3600, "ts_in_future"),
    ("click", "ts", lambda f: int((f.now + 3600) * 1000), "ts_in_future"),
    ("click", "ts", 1e300, "ts_in_future"), ("click", "ts", 2**64 - 1, "ts_in_future"),
    ("click", "ts", "9999-12-31T23:59:59-23:59", "ts_in_future"),
    ("click", "ts", 0, "ts_too_old"), ("click", "ts", 1, "ts_too_old"),
    ("click", "ts", lambda f: f.now - HORIZON - 3600, "ts_too_old"),  # 30 h is valid now
    ("click", "ts", "1970-01-01T00:00:00Z", "ts_too_old"),
    ("click", "ts", "0001-01-01T00:00:00+01:00", "ts_too_old"),
]  # fmt: skip


def _nest(depth: int) -> Any:
    value: Any = "e"
    for _ in range(depth):
        value = {"a": value}
    return value


def generate(seed: int, sc: Scenario, now: float, count: int) -> Hostile:
    return Fuzzer(random.Random(seed), sc, now).run(count)


def interleave(seed: int, good: list[Any], bad: list[Bad]) -> Iterator[Any]:
    """Both lists merged at random, each keeping its own order."""
    rng = random.Random(seed)
    i = j = 0
    while i < len(good) or j < len(bad):
        take_bad = j < len(bad) and (
            i >= len(good) or rng.random() < len(bad) / (len(good) + len(bad))
        )
        if take_bad:
            yield bad[j]
            j += 1
        else:
            yield good[i]
            i += 1
