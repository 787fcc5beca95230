"""Grouping stretches of a key into row-balanced ranges: the one rule every chunk planner uses.

A planner measures or estimates how many rows lie in consecutive stretches of the key (a
histogram's buckets, index dives, a counted pass); the stretches are then grouped in key order
until a range would pass the target. A stretch heavier than the target gets ranges of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

# A stretch of the key: keys in [start, end) and the rows estimated to hold them.
Piece = tuple[int, int, float]


def no_split(start: int, end: int, rows: float) -> list[int]:
    """Leave a heavy stretch whole."""
    return []


def even_split(start: int, end: int, rows: float, target: float) -> list[int]:
    """Cut points dividing ``[start, end)`` into equal-width ranges of about ``target`` rows."""
    pieces = -int(-rows // target)
    return [start + (j * (end - start)) // pieces for j in range(1, pieces)]


def grouped_cuts(pieces: Iterable[Piece], target: float, split: Callable[[int, int, float], list[int]]) -> list[int]:
    """Cut points grouping consecutive ``pieces`` (in key order) into ranges of about ``target`` rows.

    A piece heavier than ``target`` is a range of its own, cut inside by ``split``. The cuts come
    sorted; each lies at a piece's start or end, or where ``split`` put it.
    """
    cuts: list[int] = []
    acc = 0.0
    for start, end, rows in pieces:
        if rows > target:
            if acc:
                cuts.append(start)
            cuts += split(start, end, rows)
            cuts.append(end)
            acc = 0.0
            continue
        if acc and acc + rows > target:
            cuts.append(start)
            acc = 0.0
        acc += rows
    return sorted(set(cuts))
