"""Run identifiers: UUIDv7, so ids sort by creation time in the log and in any index."""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["new_run_id"]


def new_run_id() -> str:
    """A fresh RFC 9562 version-7 UUID: 48 bits of Unix milliseconds, then 74 random bits."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))
