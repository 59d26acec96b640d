"""The Disentanglement Score's statistics and FID against hand-computed / independent references."""

import numpy as np

from jaxface.eval import disentangle, fid


def test_pairwise_spread_hand_computed():
  x = np.array([[[0.0, 0.0], [3.0, 4.0]],                 # one pair at distance 5
                [[0.0, 0.0], [0.0, 0.0]]])                # identical
  np.testing.assert_allclose(disentangle.pairwise(x), [5.0, 0.0])
  line = np.array([[[0.0], [1.0], [3.0]]])                # distances 1, 3, 2 -> mean 2
  np.testing.assert_allclose(disentangle.pairwise(line), [2.0])
  s = disentangle.spreads({"id": np.array([[0.0], [1.0], [3.0], [0.0], [0.0], [0.0]])}, groups=2, size=3)
  np.testing.assert_allclose(s["id"], 1.0)                # groups: 2 and 0


def test_ds_is_the_product_of_spread_ratios():
  real = {"id": 2.0, "exp": 1.0, "gamma": 4.0, "angle": 0.5}
  spreads = {"exp": {"id": 0.2, "exp": 2.0, "gamma": 0.4, "angle": 0.05}}  # normalized: .1, 2, .1, .1
  out = disentangle.ds_from_spreads(spreads, real)
  np.testing.assert_allclose(out["ds"]["exp"], (2 / 0.1) ** 3, rtol=1e-9)
  np.testing.assert_allclose(out["ds_mean"], (2 / 0.1) ** 3, rtol=1e-9)
  assert out["normalized_spreads"]["exp"]["gamma"] == 0.1


def test_ds_bootstrap_interval_over_groups():
  """Identical groups give a point interval at the DS itself; spread-out groups an interval around the estimate
  that matches an independent resampling loop and narrows with more groups."""
  real = {"id": 1.0, "exp": 1.0, "gamma": 1.0, "angle": 1.0}
  same = {"exp": {"id": np.full(8, 0.5), "exp": np.full(8, 2.0), "gamma": np.full(8, 0.5), "angle": np.full(8, 1.0)}}
  intervals = disentangle.ds_intervals(same, real)
  np.testing.assert_allclose(intervals["mean"], [(2 / 0.5) * (2 / 0.5) * 2] * 2, rtol=1e-9)
  assert intervals["exp"] == intervals["mean"]  # one factor: its DS is the mean

  rng = np.random.default_rng(3)
  def groups(n):
    return {"exp": {a: rng.uniform(0.5, 1.5, n) * (3.0 if a == "exp" else 1.0) for a in real}}
  few = groups(16)
  point = disentangle.ds_from_spreads({f: {a: v.mean() for a, v in d.items()} for f, d in few.items()}, real)
  lo, hi = disentangle.ds_intervals(few, real, draws=4000, seed=1)["mean"]
  assert lo < point["ds_mean"] < hi
  ref, r = [], np.random.default_rng(7)  # an independent loop over the same definition
  for _ in range(4000):
    pick = r.integers(0, 16, 16)
    m = {a: few["exp"][a][pick].mean() for a in real}
    ref.append(m["exp"] ** 3 / (m["id"] * m["gamma"] * m["angle"]))
  np.testing.assert_allclose([lo, hi], np.quantile(ref, [0.05, 0.95]), rtol=0.05)
  lo_many, hi_many = disentangle.ds_intervals(groups(256), real)["mean"]
  assert hi_many - lo_many < (hi - lo) / 2


def test_ds_intervals_per_factor():
  """Two factors, one spread-out and one fixed: each factor's interval is its own resampling (the fixed one a
  point), and the mean's lies between theirs."""
  real = {"id": 1.0, "exp": 1.0, "gamma": 1.0, "angle": 1.0}
  rng = np.random.default_rng(5)
  groups = {"exp": {a: rng.uniform(0.5, 1.5, 32) * (3.0 if a == "exp" else 1.0) for a in real},
            "gamma": {a: np.full(32, 2.0 if a == "gamma" else 1.0) for a in real}}
  out = disentangle.ds_intervals(groups, real, draws=3000, seed=2)
  np.testing.assert_allclose(out["gamma"], [8.0, 8.0], rtol=1e-9)  # (2/1)^3, nothing to resample
  ref, r = [], np.random.default_rng(9)  # an independent loop for the spread-out factor
  for _ in range(3000):
    pick = r.integers(0, 32, 32)
    m = {a: groups["exp"][a][pick].mean() for a in real}
    ref.append(m["exp"] ** 3 / (m["id"] * m["gamma"] * m["angle"]))
  np.testing.assert_allclose(out["exp"], np.quantile(ref, [0.05, 0.95]), rtol=0.05)
  np.testing.assert_allclose(out["mean"], (np.asarray(out["exp"]) + 8.0) / 2, rtol=1e-9)


def test_frechet_distance_matches_an_eigenvalue_reference():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
  b = rng.normal(1.0, 2.0, size=(300, 6))
  s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  # tr sqrt(s1 s2) = Σ sqrt(eig(s1 s2)) (the eigenvalues of a product of SPD matrices are real, >= 0).
  ref = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(
      np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)))
  np.testing.assert_allclose(fid.frechet_distance(a, b), ref, rtol=1e-6)
  assert abs(fid.frechet_distance(a, a)) < 1e-6
