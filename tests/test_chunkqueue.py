"""Which chunk a worker claims next: neighbouring keys in each part, the key space split between workers."""

from __future__ import annotations

import itertools
import random

from rivet.execution.chunkqueue import ChunkQueue, Task, next_index


def test_a_worker_continues_with_the_chunk_after_its_last():
    assert next_index({3, 4, 9}, {2}, after=2) == 3


def test_the_first_worker_starts_at_the_beginning_and_the_next_splits_what_is_left():
    pending = set(range(20))
    assert next_index(pending, set(), after=None) == 0
    pending.discard(0)
    # Worker one is heading into 1..19: worker two starts in the middle.
    assert next_index(pending, {0}, after=None) == 10


def test_a_worker_without_a_successor_splits_the_longest_stretch_left():
    pending = {5, 6, 7, 8, 9, 10, 11, 12, 17, 18}
    assert next_index(pending, {4, 16}, after=15) == 9
    # Nobody is heading into a stretch whose predecessor is done: take its start.
    assert next_index({5, 6, 7, 8}, set(), after=30) == 5


def test_nothing_left():
    assert next_index(set(), {1, 2}, after=1) is None


def test_two_workers_cover_every_chunk_once_in_long_runs():
    queue = ChunkQueue.in_memory("r", [Task(i, f"q{i}", str(i)) for i in range(40)])
    rng = random.Random(7)
    last: list[int | None] = [None, None]
    taken: list[list[int]] = [[], []]
    while True:
        w = rng.randrange(2)
        task = queue.claim(after=last[w])
        if task is None:
            break
        taken[w].append(task.index)
        last[w] = task.index
    assert sorted(taken[0] + taken[1]) == list(range(40))
    # Each worker's chunks come in a few long runs of neighbours, not every other one.
    for mine in taken:
        breaks = sum(b != a + 1 for a, b in itertools.pairwise(mine))
        assert breaks <= 4, mine


def test_released_chunks_are_claimed_again():
    queue = ChunkQueue.in_memory("r", [Task(i, f"q{i}", str(i)) for i in range(3)])
    claimed = {t.index: t for t in (queue.claim(), queue.claim(), queue.claim()) if t is not None}
    assert sorted(claimed) == [0, 1, 2] and queue.claim() is None
    queue.release([claimed[0], claimed[1]])
    assert sorted(t.index for t in (queue.claim(), queue.claim()) if t is not None) == [0, 1]
    assert queue.claim() is None
