"""Seeded splits of a data set into training, validation and test parts.

A model is judged on data it never learnt from, so every real data set is cut the same way:
the keys (a CLIF person, a PhysioNet stay) in sorted order, shuffled by one seed, cut at the
fractions. Sorting first makes the split a function of the seed and the set of keys alone, not
of the order files were listed in; the parts' keys go into the checkpoint's manifest, so
evaluation can score the held-out ones only.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

PARTS: tuple[str, ...] = ("train", "validation", "test")


def assign_parts(keys: Iterable[str], fractions: tuple[float, float, float], seed: int) -> dict[str, int]:
    """Each distinct key -> its part (0 train, 1 validation, 2 test), ``fractions`` of the keys each."""
    if len(fractions) != 3 or min(fractions) <= 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three positive shares summing to 1, got {fractions}")
    ordered = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(ordered))
    cut1 = round(len(ordered) * fractions[0])
    cut2 = cut1 + round(len(ordered) * fractions[1])
    return {ordered[i]: (0 if k < cut1 else 1 if k < cut2 else 2) for k, i in enumerate(order)}
