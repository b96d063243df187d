"""Identifiers: CUID2, as the specification's `VARCHAR(24)` ids expect."""

from __future__ import annotations

import os
import random
import threading

from cuid2 import Cuid

_DRAW = 7  # bytes per float, as `random.SystemRandom.random` reads them: 53 bits of the 56


class _BufferedSystemRandom(random.SystemRandom):
    """The operating system's randomness, read 4 KB at a time rather than 7 bytes per call.

    CUID2 draws one float per character of an id, and `SystemRandom` makes a `getrandom` call
    for each: 75 or so per create, each a system call that lets go of the interpreter lock and
    takes it back while the request threads want it. The bytes are the same kernel's; they are
    only fetched in bulk.
    """

    _BLOCK = _DRAW * 585  # 4,095 bytes

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0

    def random(self) -> float:
        with self._lock:
            if self._at + _DRAW > len(self._buffer):
                self._buffer, self._at = os.urandom(self._BLOCK), 0
            start, self._at = self._at, self._at + _DRAW
            chunk = self._buffer[start : self._at]
        return (int.from_bytes(chunk) >> 3) * 2.0**-53

    def _reseed_after_fork(self) -> None:
        # A child must not hand out the bytes its parent will hand out too, nor inherit the
        # lock held by a thread it does not have.
        self._lock = threading.Lock()
        self._buffer, self._at = b"", 0


_random = _BufferedSystemRandom()
os.register_at_fork(after_in_child=_random._reseed_after_fork)

new_id = Cuid(random_generator=lambda: _random, length=24).generate
short_id = Cuid(random_generator=lambda: _random, length=8).generate
