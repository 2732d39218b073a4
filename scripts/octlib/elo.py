"""Trait Elo from pairwise judgements (the reference's Elo of character/preferences, Figures 3-4 notebooks):
its single sequential pass, a bootstrap for intervals, and rank correlations between models."""

import random


def elo(comparisons, k=32.0, start=1000.0):
    """One pass in row order over (trait_1, trait_2, winner). As in the reference, the traits are those that
    appear in a comparison, each starting at `start`: a trait never compared has no score."""
    ratings = {}
    for a, b, winner in comparisons:
        ra, rb = ratings.setdefault(a, start), ratings.setdefault(b, start)
        ea = 1 / (1 + 10 ** ((rb - ra) / 400))
        sa = 1.0 if winner == a else 0.0
        ratings[a] = ra + k * (sa - ea)
        ratings[b] = rb + k * ((1 - sa) - (1 - ea))
    return ratings


def bootstrap(comparisons, rounds, seed, k=32.0):
    """Elo of `rounds` resamples of the comparisons, drawn with replacement in random order: the spread that
    both the finite sample of judgements and their order cause (a trait missing from a resample is absent
    from that run)."""
    rng = random.Random(seed)
    return [elo(rng.choices(comparisons, k=len(comparisons)), k) for _ in range(rounds)]


def percentile(values, q):
    values = sorted(values)
    position = (len(values) - 1) * q
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def spearman(a, b):
    """Spearman correlation of two {trait: score} maps over their common traits (average ranks for ties)."""
    from scipy.stats import spearmanr

    common = sorted(set(a) & set(b))
    return float(spearmanr([a[t] for t in common], [b[t] for t in common]).statistic)
