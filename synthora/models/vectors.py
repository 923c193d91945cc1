"""Embedding vectors as the event log keeps them: float32, packed, 4 bytes a dimension.

Servers compute embeddings in float32 (OpenAI's ``encoding_format="base64"`` is exactly these
bytes), so packing loses nothing they sent, and a stored vector is a quarter of its JSON text.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence

__all__ = ["pack", "unpack"]


_SWAP = sys.byteorder == "big"  # stored little-endian, as the wire's base64 is


def pack(vectors: Sequence[Sequence[float]]) -> tuple[bytes, ...]:
    packed = []
    for vector in vectors:
        values = array("f", vector)
        if _SWAP:
            values.byteswap()
        packed.append(values.tobytes())
    return tuple(packed)


def unpack(packed: Sequence[bytes]) -> list[list[float]]:
    vectors = []
    for data in packed:
        values = array("f")
        values.frombytes(data)
        if _SWAP:
            values.byteswap()
        vectors.append(values.tolist())
    return vectors
