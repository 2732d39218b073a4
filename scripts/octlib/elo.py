"""Trait Elo from pairwise judgements (reference.md §3): the reference's single sequential pass, plus a
bootstrap over comparison order for intervals, and rank correlations between models."""

import random


def elo(comparisons, traits, k=32.0, start=1000.0):
    """One pass in row order over (trait_1, trait_2, winner); every trait of `traits` starts at `start`.

    The reference starts only the traits that appear; with the paper's 25,000 comparisons all 144 do.
    """
    ratings = {t: start for t in traits}
    for a, b, winner in comparisons:
        ra, rb = ratings[a], ratings[b]
        ea = 1 / (1 + 10 ** ((rb - ra) / 400))
        sa = 1.0 if winner == a else 0.0
        ratings[a] = ra + k * (sa - ea)
        ratings[b] = rb + k * ((1 - sa) - (1 - ea))
    return ratings


def bootstrap(comparisons, traits, rounds, seed, k=32.0):
    """Elo of `rounds` random reorderings of the comparisons: the spread the order alone causes."""
    rng = random.Random(seed)
    runs = []
    for _ in range(rounds):
        order = comparisons[:]
        rng.shuffle(order)
        runs.append(elo(order, traits, k))
    return runs


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
