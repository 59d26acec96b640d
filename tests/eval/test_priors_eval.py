"""Prior evaluation metrics on known inputs: moments, energy distance, its permutation test, the Gaussian fit."""

import ml_collections
import numpy as np

from jaxface.eval import priors as ev


def _energy_bruteforce(x, y):
  d = lambda a, b: np.mean([np.linalg.norm(p - q) for p in a for q in b])
  return 2 * d(x, y) - d(x, x) - d(y, y)


def test_energy_distance_matches_bruteforce():
  r = np.random.default_rng(0)
  x, y = r.normal(size=(13, 3)), r.normal(0.4, 1.3, size=(9, 3))
  stat, _ = ev.energy_test(x, y, permutations=5)
  np.testing.assert_allclose(stat, _energy_bruteforce(x, y), rtol=1e-9)


def test_energy_test_rejects_shift_and_accepts_same_distribution():
  r = np.random.default_rng(1)
  x = r.normal(size=(300, 4))
  _, p_shift = ev.energy_test(x, r.normal(size=(300, 4)) + [0.3, 0, 0, 0], permutations=200, seed=0)
  _, p_same = ev.energy_test(x, r.normal(size=(300, 4)), permutations=200, seed=0)
  assert p_shift < 0.01
  assert p_same > 0.05


def test_energy_test_p_values_are_calibrated_under_the_null():
  # Under H0 the permutation p-value is (close to) uniform: ~5% of tests at level 0.05 reject.
  r = np.random.default_rng(2)
  ps = [ev.energy_test(r.normal(size=(40, 2)), r.normal(size=(40, 2)), permutations=99, seed=i)[1] for i in range(60)]
  assert 0.0 <= np.mean(np.array(ps) < 0.05) <= 0.17
  assert 0.35 < np.mean(ps) < 0.65


def test_moments_tolerance():
  r = np.random.default_rng(3)
  data = r.normal([0.0, 5.0], [1.0, 2.0], size=(20000, 2))
  good = r.normal([0.02, 5.1], [1.05, 1.9], size=(20000, 2))
  m = ev.moments(good, data, tol=0.1)
  assert m["pass"] and m["dims_ok"] == 2
  bad = r.normal([0.0, 5.0], [1.0, 2.6], size=(20000, 2))  # std 30% too large in dim 1
  m = ev.moments(bad, data, tol=0.1)
  assert not m["pass"] and m["worst_std_dim"] == 1 and abs(m["max_std_rel_err"] - 0.3) < 0.03
  shifted = data + [0.25, 0.0]  # mean off by 0.25 data stds in dim 0
  m = ev.moments(shifted, data, tol=0.1)
  assert not m["pass"] and m["worst_mean_dim"] == 0 and abs(m["max_mean_gap"] - 0.25 / data[:, 0].std()) < 1e-9


def test_gaussian_fit_matches_moments():
  r = np.random.default_rng(4)
  data = r.multivariate_normal([1.0, -1.0], [[2.0, 0.8], [0.8, 1.0]], size=5000)
  s = ev.gaussian_fit(data, 20000, r)
  np.testing.assert_allclose(s.mean(0), data.mean(0), atol=0.05)
  np.testing.assert_allclose(np.cov(s, rowvar=False), np.cov(data, rowvar=False), atol=0.08)


def test_evaluate_factor_prefers_a_bimodal_model_on_bimodal_data():
  r = np.random.default_rng(5)
  mix = lambda n: np.where(r.uniform(size=(n, 1)) < 0.5, -2.0, 2.0) + 0.3 * r.normal(size=(n, 2))
  train, held = mix(4000), mix(1000)
  # An exact "decoder": z -> the mixture via the normal CDF of z[0] (a perfect prior) ...
  from scipy.special import ndtr
  exact = lambda z: np.where(ndtr(z[:, :1]) < 0.5, -2.0, 2.0) + 0.3 * z[:, 1:3]
  cfg = ml_collections.ConfigDict(dict(num_samples=4000, test_rows=400, permutations=100, tolerance=0.1))
  res = ev.evaluate_factor(exact, 3, train, held, cfg)
  assert res["pass"] and res["beats_gaussian"] and res["p_gaussian"] < 0.02
  # ... and a decoder that is just the fitted Gaussian does not beat it by much and fails the test's spirit.
  gauss = lambda z: train.mean(0) + z[:, :2] @ np.linalg.cholesky(np.cov(train, rowvar=False)).T
  res_g = ev.evaluate_factor(gauss, 2, train, held, cfg)
  assert res_g["p_vae"] < 0.02 and res_g["energy_vae"] > 5 * res["energy_vae"]
