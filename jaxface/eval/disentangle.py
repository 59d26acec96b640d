"""GAN-Control's Disentanglement Score (Shoshan et al. 2021), as pure numpy functions.

For factor i, groups of images in which only i varies; for every attribute j (identity embedding, R-Net
expression, lighting, angles) the spread σ_ij = mean pairwise Euclidean distance within a group, averaged over
groups, divided by the same statistic over real images. DS_i = Π_{j≠i} σ_ii / σ_ij: high when varying factor i
moves attribute i and little else.
"""

import numpy as np

FACTORS = ("id", "exp", "gamma", "angle")          # what a group varies (z factors)
ATTRIBUTES = ("id", "exp", "gamma", "angle")       # what the experts measure, paired with FACTORS


def pairwise(x):
  """Mean pairwise Euclidean distance within each group: x [G, K, D] -> [G]."""
  d = np.linalg.norm(x[:, :, None] - x[:, None, :], axis=-1)
  k = x.shape[1]
  return d.sum((1, 2)) / (k * (k - 1))


def group_spreads(attrs, groups, size):
  """{attr: [G]}: each group's mean pairwise distance."""
  return {a: pairwise(np.asarray(v, np.float64).reshape(groups, size, -1)) for a, v in attrs.items()}


def spreads(attrs, groups, size):
  return {a: float(v.mean()) for a, v in group_spreads(attrs, groups, size).items()}


def mean_spreads(per_group):
  """{factor: {attr: [G]}} -> {factor: {attr: σ}}, the spreads averaged over groups."""
  return {f: {a: float(np.mean(v)) for a, v in attrs.items()} for f, attrs in per_group.items()}


def ds_intervals(per_group, real_spread, level=0.9, draws=2000, seed=0):
  """Bootstrap intervals of the DS: {factor: {attr: [G]}} per-group spreads, each factor's groups resampled with
  replacement (the real-image normalizer held fixed). Returns {"mean": [low, high], factor: [low, high], ...} at
  `level`: the mean DS's interval and each factor's (a change that helps one factor and hurts another shows in
  these, not in the mean)."""
  rng = np.random.default_rng(seed)
  draws_of = {"mean": []}
  for _ in range(draws):
    resampled = {}
    for f, attrs in per_group.items():
      g = len(next(iter(attrs.values())))
      pick = rng.integers(0, g, g)
      resampled[f] = {a: v[pick] for a, v in attrs.items()}
    d = ds_from_spreads(mean_spreads(resampled), real_spread)
    draws_of["mean"].append(d["ds_mean"])
    for f, v in d["ds"].items():
      draws_of.setdefault(f, []).append(v)
  q = [(1 - level) / 2, (1 + level) / 2]
  return {k: [float(x) for x in np.quantile(v, q)] for k, v in draws_of.items()}


def ds_from_spreads(spreads, real_spread):
  """{factor: {attr: σ}} -> DS per factor and their mean, σ normalized by the real-image spread."""
  norm = {f: {a: spreads[f][a] / max(real_spread[a], 1e-12) for a in ATTRIBUTES} for f in spreads}
  ds = {}
  for f, a_i in zip(FACTORS, ATTRIBUTES):
    if f in norm:
      ds[f] = float(np.prod([norm[f][a_i] / max(norm[f][a], 1e-12) for a in ATTRIBUTES if a != a_i]))
  return {"ds": ds, "ds_mean": float(np.mean(list(ds.values()))), "normalized_spreads": norm}
