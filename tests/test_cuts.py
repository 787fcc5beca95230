"""The one grouping rule every chunk planner uses: consecutive stretches of a key grouped into ranges
of about the target's rows, a heavy stretch in ranges of its own."""

from __future__ import annotations

import bisect
import itertools
import random

import pytest

from rivet.sources.cuts import even_split, grouped_cuts, no_split


def test_light_stretches_are_grouped_up_to_the_target():
    pieces = [(0, 10, 4), (10, 20, 4), (20, 30, 4), (30, 40, 4), (40, 50, 1)]
    assert grouped_cuts(pieces, 8, no_split) == [20, 40]


def test_a_heavy_stretch_is_a_range_of_its_own_cut_inside_by_split():
    pieces = [(0, 10, 2), (10, 40, 30), (40, 50, 2)]
    assert grouped_cuts(pieces, 10, lambda a, b, n: even_split(a, b, n, 10)) == [10, 20, 30, 40]
    assert grouped_cuts(pieces, 10, no_split) == [10, 40]


def test_a_leading_heavy_stretch_gets_no_cut_before_it():
    assert grouped_cuts([(0, 10, 50), (10, 20, 1)], 10, no_split) == [10]


@pytest.mark.parametrize("seed", range(20))
def test_every_range_holds_at_most_the_target_or_one_heavy_stretch(seed):
    rng = random.Random(seed)
    starts = sorted(rng.sample(range(1, 10_000), 200))
    pieces = [(a, b, rng.choice([0, 1, 5, 20, 300])) for a, b in zip([0, *starts], [*starts, 10_000], strict=True)]
    cuts = grouped_cuts(pieces, 100, no_split)
    assert cuts == sorted(set(cuts))
    edges = {a for a, _, _ in pieces} | {b for _, b, _ in pieces}
    assert set(cuts) <= edges  # without split, cuts fall on the edges of stretches
    ranges: dict[int, list[float]] = {}
    for start, _, rows in pieces:
        ranges.setdefault(bisect.bisect_right(cuts, start), []).append(rows)
    for held in ranges.values():
        # (empty stretches before a heavy one cost nothing and stay with it)
        assert sum(held) <= 100 or len([n for n in held if n]) == 1, held
    # Grouped as far as the target allows: two neighbouring ranges together would pass it.
    totals = [sum(ranges.get(i, [])) for i in range(len(cuts) + 1)]
    assert all(a + b > 100 for a, b in itertools.pairwise(totals) if a and b)
