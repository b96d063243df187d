"""Identifiers: CUID2's shape, unique across threads and forks, randomness fetched in bulk."""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from generator import ids

CUID2 = re.compile(r"^[a-z][0-9a-z]+$")


def test_ids_have_cuid2s_shape_and_lengths() -> None:
    made = [ids.new_id() for _ in range(200)]
    assert all(CUID2.match(i) and len(i) == 24 for i in made)
    assert all(CUID2.match(i) and len(i) == 8 for i in (ids.short_id() for _ in range(200)))


def test_threads_never_share_an_id() -> None:
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [ids.new_id() for _ in range(2000)], range(8)))
    made = [i for batch in batches for i in batch]
    assert len(set(made)) == len(made)


def test_randomness_is_read_from_the_kernel_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = os.urandom

    def counting(n: int) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", counting)
    for _ in range(1000):  # about 25 draws each
        ids.new_id()
    # One getrandom call per draw was 25,000 calls, each letting go of the interpreter lock.
    assert 0 < len(calls) < 100
    draws = [ids._random.random() for _ in range(10_000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert 0.45 < sum(draws) / len(draws) < 0.55


def _child_draws(send: Callable[[list[float]], None]) -> None:
    send([ids._random.random() for _ in range(4)])


def test_a_forked_child_does_not_repeat_its_parents_draws() -> None:
    ids._random.random()  # the parent holds a partly used block
    fork = multiprocessing.get_context("fork")
    ours, theirs = fork.Pipe()
    child = fork.Process(target=_child_draws, args=(theirs.send,))
    child.start()
    child_draws = ours.recv()
    child.join(10)
    parent_draws = [ids._random.random() for _ in range(4)]
    assert child_draws != parent_draws
