"""Shared pieces of the fuzz suites (tests/test_fuzz_*.py): a per-input time limit, byte-level
mutators, and a tally of what was tried (printed with ``-s`` and recorded in bench/README.md).

Every fuzzed call must return normally or raise the one exception type its API documents for bad
input, within ``LIMIT`` seconds; anything else (another exception, a RecursionError, a hang) fails.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import signal
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
TEST = ROOT / "data" / "vnncomp2021" / "test"
ACAS = ROOT / "data" / "vnncomp2021" / "acasxu"

#: seconds any single fuzzed input may take (the time limit the suite asserts)
LIMIT = 10.0

#: kind -> Counter(tried=..., clean_error=..., accepted=...)
TALLY: dict[str, Counter] = {}


class Hang(Exception):
    """The input took longer than its time limit."""


@contextmanager
def time_limit(seconds: float = LIMIT):
    """Fail with Hang when the block runs longer than ``seconds`` (SIGALRM: main thread only)."""

    def on_alarm(*_: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    t0 = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - t0 <= seconds


@atexit.register
def _dump() -> None:  # TORCHLEAN_FUZZ_TALLY=path.json: the counts bench/README.md records
    path = os.environ.get("TORCHLEAN_FUZZ_TALLY")
    if path and TALLY:
        with open(path, "w") as f:
            json.dump({k: dict(v) for k, v in sorted(TALLY.items())}, f, indent=1)


def tally(kind: str, outcome: str) -> None:
    TALLY.setdefault(kind, Counter())["tried"] += 1
    TALLY[kind][outcome] += 1


PALETTE_TEXT = list("()<>=-+.e;_ \n\t0123456789XYand") + ["١", "٣", "\u00a0", "\ufeff", "é", "\x00"]


def mutate_text(text: str, rng: random.Random, edits: int = 3) -> str:
    """A few random edits: delete, insert, duplicate or swap a span, or truncate."""
    s = text
    for _ in range(edits):
        if not s:
            s = rng.choice(PALETTE_TEXT)
            continue
        i = rng.randrange(len(s))
        j = min(len(s), i + rng.randint(1, 12))
        op = rng.randrange(6)
        if op == 0:
            s = s[:i] + s[j:]
        elif op == 1:
            s = s[:i] + "".join(rng.choice(PALETTE_TEXT) for _ in range(rng.randint(1, 4))) + s[i:]
        elif op == 2:
            s = s[:j] + s[i:j] + s[j:]
        elif op == 3:
            k = rng.randrange(len(s))
            s = s[:i] + s[k : k + (j - i)] + s[j:]
        elif op == 4:
            s = s[:i]
        else:  # a numeral swapped for an extreme one
            s = s[:i] + rng.choice(EXTREME_NUMERALS) + s[j:]
    return s


EXTREME_NUMERALS = [
    "1e999999999", "-1e999999999", "1e-999999999", "1" * 5000, "0." + "3" * 5000, "1e4001",
    "١٢", "1_000", "0x10", "nan", "inf", "-inf", "1/0", "1e", ".", "-", "+-1", "1e+", "٣.5",
]


def mutate_bytes(data: bytes, rng: random.Random, edits: int = 3) -> bytes:
    b = bytearray(data)
    for _ in range(edits):
        if not b:
            b = bytearray(b"\x00")
        i = rng.randrange(len(b))
        op = rng.randrange(4)
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i] = rng.randrange(256)
        elif op == 2:
            del b[i : i + rng.randint(1, 16)]
        else:
            b = b[: rng.randrange(len(b) + 1)]
    return bytes(b)
