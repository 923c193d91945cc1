"""Run identifiers: monotonic UUIDv7, so ids sort by creation time in the log and in any index.

RFC 9562 version 7 puts Unix milliseconds first; within one millisecond this process's ids count
up in the 12 ``rand_a`` bits (§6.2, method 1, a fixed-length dedicated counter seeded at random
below its midpoint), so ids made one after another always sort in the order they were made, even
thousands to a millisecond. The 62 ``rand_b`` bits stay random: ids of different processes never
collide.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid

__all__ = ["new_run_id"]

_COUNTER_BITS = 12


class _Sequence:
    """The millisecond and counter this process last gave out."""

    __slots__ = ("counter", "lock", "ms")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ms = 0
        self.counter = 0

    def advance(self) -> tuple[int, int]:
        with self.lock:
            ms = time.time_ns() // 1_000_000
            if ms > self.ms:
                self.ms, self.counter = ms, secrets.randbits(_COUNTER_BITS - 1)
            elif self.counter < (1 << _COUNTER_BITS) - 1:
                self.counter += 1
            else:  # 4,096 ids in one millisecond: borrow the next one, as §6.2 allows
                self.ms, self.counter = self.ms + 1, 0
            return self.ms, self.counter

    def forget_lock(self) -> None:
        """In a forked child: the parent's lock may have been held at the fork."""
        self.lock = threading.Lock()


_sequence = _Sequence()
os.register_at_fork(after_in_child=_sequence.forget_lock)


def new_run_id() -> str:
    """A fresh RFC 9562 version-7 UUID, greater than every id this process made before."""
    ms, counter = _sequence.advance()
    value = ms << 80 | 0x7 << 76 | counter << 64 | 0x2 << 62 | int.from_bytes(os.urandom(8)) >> 2
    return str(uuid.UUID(int=value))
