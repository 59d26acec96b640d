"""InterFaceGAN editing core: planted directions, the SVM against an independent QP solver, the exact sample
selection, projection and interpolation identities, and bad-input errors."""

import numpy as np
import pytest
import scipy.optimize

from jaxface.edit import interfacegan as ifg
from jaxface.runs import latent_codes
from jaxface.errors import UserError


def _unit(v):
  v = np.asarray(v, np.float64)
  return v / np.linalg.norm(v)


def _planted(d, n, seed=0, noise=0.0):
  rng = np.random.default_rng(seed)
  normal = _unit(rng.standard_normal(d))
  z = latent_codes.renormalize_z(rng.standard_normal((n, d)))
  scores = (z @ normal + noise * rng.standard_normal(n))[:, None]
  return z, scores, normal


def _hinge_objective(x, y, w, b, C=1.0):
  return 0.5 * w @ w + C * np.maximum(0.0, 1.0 - y * (x @ w + b)).sum()


# ------------------------------------------------------------------------------------------------- latents

def test_sample_z_lies_on_the_sqrt_d_sphere_and_is_seeded():
  z = latent_codes.sample_z(3, 500, 64)
  assert z.shape == (500, 64) and z.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(z, axis=1), 8.0, rtol=1e-5)
  np.testing.assert_array_equal(z, latent_codes.sample_z(3, 500, 64))
  assert not np.allclose(z, latent_codes.sample_z(4, 500, 64))
  assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02  # still the N(0, I) directions


# ------------------------------------------------------------------------------------------------- boundaries

def test_planted_direction_is_recovered_d64_n20k():
  z, scores, normal = _planted(64, 20_000)
  boundary, info = ifg.train_boundary(z, scores, return_info=True)
  assert boundary.shape == (1, 64) and boundary.dtype == np.float32
  assert abs(np.linalg.norm(boundary) - 1) < 1e-6
  cos = float(boundary[0] @ normal)
  assert cos >= 0.995, cos
  assert info["chosen_num"] == 400 and info["train_num"] == 280 and info["val_num"] == 120
  assert info["remaining_num"] == 20_000 - 800
  assert info["val_accuracy"] == 1.0 and info["remaining_accuracy"] > 0.95
  assert info["iterations"] > 0


def test_svm_solves_the_primal_problem_like_an_independent_qp_solver():
  # Tiny, non-separable: the primal QP min 1/2|w|^2 + C sum xi, y(w.x + b) >= 1 - xi, xi >= 0 by SLSQP. Checks the
  # sign and scale conventions of the weights and intercept fit_linear_svm returns.
  rng = np.random.default_rng(1)
  x = rng.standard_normal((40, 3))
  y = np.where(x @ np.array([1.0, -2.0, 0.5]) + 0.8 * rng.standard_normal(40) > 0.3, 1.0, -1.0)
  w, b, _ = ifg.fit_linear_svm(x, y, C=1.0, tol=1e-8)
  n, d = x.shape
  obj = lambda v: 0.5 * v[:d] @ v[:d] + v[d + 1:].sum()
  cons = [{"type": "ineq", "fun": lambda v: y * (x @ v[:d] + v[d]) - 1 + v[d + 1:]},
          {"type": "ineq", "fun": lambda v: v[d + 1:]}]
  ref = scipy.optimize.minimize(obj, np.concatenate([np.zeros(d + 1), np.ones(n)]), constraints=cons,
                                method="SLSQP", options={"ftol": 1e-12, "maxiter": 500})
  assert ref.success
  np.testing.assert_allclose(w, ref.x[:d], atol=1e-4)
  assert abs(b - ref.x[d]) < 1e-3
  assert _hinge_objective(x, y, w, b) <= ref.fun + 1e-6


def test_boundary_is_the_svm_normal_of_the_selected_codes():
  from sklearn import svm
  for noise, ratio, n in ((0.0, 0.02, 8000), (1.0, 0.1, 3000)):  # separable; overlapping
    z, scores, _ = _planted(32, n, seed=2, noise=noise)
    boundary, info = ifg.train_boundary(z, scores, ratio, return_info=True)
    sel = ifg.select_samples(scores, ratio)
    idx = np.concatenate([sel["pos_train"], sel["neg_train"]])
    labels = np.r_[np.ones(len(sel["pos_train"])), np.zeros(len(sel["neg_train"]))]
    clf = svm.SVC(kernel="linear").fit(z[idx].astype(np.float64), labels)
    coef = clf.coef_[0]
    assert float(boundary[0] @ _unit(coef)) > 0.999999
    assert abs(info["intercept"] - clf.intercept_[0] / np.linalg.norm(coef)) < 1e-5


def test_selection_is_exactly_the_originals():
  scores = np.array([5.0, -1.0, 3.0, 0.0, 9.0, -4.0, 2.0, 7.0, -2.0, 1.0, 4.0])[:, None]  # N = 11
  sel = ifg.select_samples(scores, 0.3, 0.7, seed=0)  # chosen = int(3.3) = 3, train = int(2.1) = 2
  assert sel["chosen_num"] == 3
  assert sorted(np.r_[sel["pos_train"], sel["pos_val"]]) == [0, 4, 7]  # 9, 7, 5
  assert sorted(np.r_[sel["neg_train"], sel["neg_val"]]) == [1, 5, 8]  # -1, -2, -4
  assert len(sel["pos_train"]) == len(sel["neg_train"]) == 2 and len(sel["pos_val"]) == 1
  assert sel["threshold"] == 2.5  # (max + min) / 2, not 0 or the median
  remaining = dict(zip(sel["remaining"].tolist(), sel["remaining_labels"].tolist()))
  assert remaining == {2: True, 3: False, 6: False, 9: False, 10: True}
  assert ifg.select_samples(scores, 4)["chosen_num"] == 4  # > 1 is a count
  assert ifg.select_samples(scores, 50)["chosen_num"] == 5  # capped at N // 2
  assert ifg.select_samples(scores, 1.0)["chosen_num"] == 5
  a, b = ifg.select_samples(scores, 0.3, seed=1), ifg.select_samples(scores, 0.3, seed=1)
  np.testing.assert_array_equal(a["pos_train"], b["pos_train"])


def test_invalid_value_rows_are_dropped():
  z, scores, normal = _planted(16, 2000, seed=3)
  bad = np.arange(0, 2000, 7)
  scores = scores.copy()
  scores[bad] = -999.0
  _, info = ifg.train_boundary(z, scores, 0.1, invalid_value=-999.0, return_info=True)
  assert info["num_samples"] == 2000 - len(bad)
  assert info["chosen_num"] == int((2000 - len(bad)) * 0.1)


def test_centred_mode_keeps_the_normal_and_moves_the_distance_origin():
  # W-like codes: far from the origin. The SVM intercept is unregularised, so centring cannot change the normal.
  z, scores, _ = _planted(16, 4000, seed=4, noise=0.5)
  mean = np.linspace(-3, 3, 16)
  w = z + mean
  b0, i0 = ifg.train_boundary(w, scores, 0.1, return_info=True)
  b1, i1 = ifg.train_boundary(w, scores, 0.1, center="mean", return_info=True)
  b2, i2 = ifg.train_boundary(w, scores, 0.1, center=mean, return_info=True)
  assert float(b0[0] @ b1[0]) > 0.9999 and float(b0[0] @ b2[0]) > 0.9999
  assert i0["offset"] == 0.0
  assert abs(i1["offset"] - float(b1[0] @ w.mean(0))) < 1e-5
  assert abs(i2["offset"] - float(b2[0] @ mean)) < 1e-5
  assert abs(i0["intercept"] - (i2["intercept"] - i2["offset"])) < 2e-3  # the same hyperplane
  edited = ifg.linear_interpolate(w[:1], b2, -1.0, 1.0, 3, offset=i2["offset"])
  np.testing.assert_allclose(edited @ b2[0].astype(np.float64) - i2["offset"], [-1.0, 0.0, 1.0], atol=1e-4)


def test_w_plus_codes_train_one_flattened_boundary():
  z, scores, normal = _planted(8, 3000, seed=5)
  wp = np.repeat(z[:, None], 3, axis=1)  # [N, 3, 8]
  boundary = ifg.train_boundary(wp, scores, 0.1)
  assert boundary.shape == (1, 24)
  per_layer = boundary.reshape(3, 8)
  for layer in per_layer:  # repeated w: every layer's block points along the planted normal
    assert float(_unit(layer) @ normal) > 0.99


# ------------------------------------------------------------------------------------------------- projection

def _correlated_normals(d=64, seed=6):
  rng = np.random.default_rng(seed)
  a, b, c, e = (_unit(rng.standard_normal(d)) for _ in range(4))
  n2 = a
  n1 = _unit(0.5 * n2 + np.sqrt(0.75) * _unit(b - (b @ n2) * n2))  # cos(n1, n2) = 0.5
  return n1[None], n2[None], c[None], e[None]


def test_projection_is_orthogonal_unit_and_matches_a_least_squares_reference():
  n1, n2, c3, c4 = _correlated_normals()
  for conds in ((n2,), (n2, c3), (n2, c3, c4)):
    new = ifg.project_boundary(n1, *conds)
    assert new.shape == (1, 64)
    assert abs(np.linalg.norm(new) - 1) < 1e-12
    for c in conds:
      assert abs((new @ c.T).item()) < 1e-6
    cmat = np.concatenate(conds)
    coef, *_ = np.linalg.lstsq(cmat.T, n1[0], rcond=None)  # independent reference: residual off span(conds)
    np.testing.assert_allclose(new[0], _unit(n1[0] - cmat.T @ coef), atol=1e-7)
  np.testing.assert_allclose(ifg.project_boundary(n1), n1)
  single = ifg.project_boundary(n1, n2)
  assert abs((single @ n1.T).item() - np.sqrt(1 - 0.25)) < 1e-12  # cos(primal, projected) = sqrt(1 - c^2)


def test_two_condition_closed_form_equals_the_linear_solve_path():
  n1, n2, c3, _ = _correlated_normals(seed=7)
  closed = ifg._project_two_closed_form(n1, n2, c3)
  solved = ifg._project_solve(n1, [n2, c3])
  np.testing.assert_allclose(closed / np.linalg.norm(closed), solved / np.linalg.norm(solved), atol=1e-6)
  # One condition equals two when the second is orthogonal to everything involved.
  orth = _unit(np.r_[np.zeros(63), 1.0])
  m1, m2 = (_unit(np.r_[v[0, :63], 0.0])[None] for v in (n1, n2))
  np.testing.assert_allclose(ifg.project_boundary(m1, m2), ifg.project_boundary(m1, m2, orth[None]), atol=1e-7)


def test_conditional_edit_leaves_the_conditioned_attribute_alone():
  # Two planted linear attributes with cos(n1, n2) = 0.5; boundaries are learned from data, as in practice.
  n1, n2, _, _ = _correlated_normals(d=32, seed=8)
  z = latent_codes.sample_z(0, 20_000, 32).astype(np.float64)
  b1 = ifg.train_boundary(z, (z @ n1[0])[:, None]).astype(np.float64)
  b2 = ifg.train_boundary(z, (z @ n2[0])[:, None]).astype(np.float64)
  alpha = 3.0
  raw = ifg.shift_codes(z[:100], b1, alpha) - z[:100]
  cond = ifg.shift_codes(z[:100], ifg.project_boundary(b1, b2), alpha) - z[:100]
  raw_s2, cond_s2 = (raw @ n2[0]).mean(), (cond @ n2[0]).mean()
  assert abs(raw_s2 - 1.5) < 0.1  # the unconditioned edit drags attribute 2 along: alpha * cos
  assert abs(cond_s2) < 0.1 * abs(raw_s2)  # >= 90% of that change removed
  assert abs((cond @ n1[0]).mean() - alpha * np.sqrt(0.75)) < 0.1


def test_projection_rejects_bad_boundaries():
  n1, n2, c3, _ = _correlated_normals()
  with pytest.raises(UserError, match=r"shape \(64,\)"):
    ifg.project_boundary(n1[0], n2)
  with pytest.raises(UserError, match=r"\(1, 64\)"):
    ifg.project_boundary(n1, n2[:, :32])
  with pytest.raises(UserError, match="unit normals"):
    ifg.project_boundary(n1 * 2, n2)
  with pytest.raises(UserError, match="linearly dependent"):
    ifg.project_boundary(n1, n2, c3, _unit(n2 + c3))
  with pytest.raises(UserError, match="span"):
    ifg.project_boundary(n2, n2)


# ------------------------------------------------------------------------------------------------- interpolation

def test_linear_interpolate_absolute_for_z_and_w():
  rng = np.random.default_rng(9)
  n = _unit(rng.standard_normal(16))[None]
  code = rng.standard_normal((1, 16)) * 3
  out = ifg.linear_interpolate(code, n, -3.0, 3.0, 10)
  assert out.shape == (10, 16) and out.dtype == np.float32
  np.testing.assert_allclose(out @ n[0], np.linspace(-3, 3, 10), atol=1e-5)  # distances set, not added
  residual = out - code - (out - code) @ n.T * n  # only the normal component changes
  np.testing.assert_allclose(residual, 0, atol=1e-5)
  shifted = ifg.linear_interpolate(code, n, -1.0, 1.0, 5, offset=2.0)
  np.testing.assert_allclose(shifted @ n[0] - 2.0, np.linspace(-1, 1, 5), atol=1e-5)


def test_linear_interpolate_relative_for_w_plus():
  rng = np.random.default_rng(10)
  n = _unit(rng.standard_normal(8))[None]
  code = rng.standard_normal((1, 4, 8))
  out = ifg.linear_interpolate(code, n, -2.0, 2.0, 5)
  assert out.shape == (5, 4, 8)
  expected = np.linspace(-2, 2, 5)[:, None, None] * n[None]
  np.testing.assert_allclose(out - code, np.broadcast_to(expected, out.shape), atol=1e-6)
  some = ifg.linear_interpolate(code, n, -2.0, 2.0, 5, layers=[1, 3])
  np.testing.assert_allclose((some - code)[:, [0, 2]], 0, atol=1e-7)
  np.testing.assert_allclose((some - code)[:, [1, 3]], (out - code)[:, [1, 3]], atol=1e-6)
  flat = _unit(rng.standard_normal(32))[None]  # one flattened W+ boundary
  out = ifg.linear_interpolate(code, flat, 0.0, 1.0, 2)
  np.testing.assert_allclose(out[1] - code[0], flat.reshape(4, 8), atol=1e-6)


def test_linear_interpolate_rejects_bad_shapes():
  n = _unit(np.ones(16))[None]
  with pytest.raises(UserError, match="one code"):
    ifg.linear_interpolate(np.zeros((2, 16)), n)
  with pytest.raises(UserError, match=r"\(1, 16\)"):
    ifg.linear_interpolate(np.zeros((1, 16)), n[:, :8])
  with pytest.raises(UserError, match="steps"):
    ifg.linear_interpolate(np.zeros((1, 16)), n, steps=0)


# ------------------------------------------------------------------------------------------------ bad input, re-scoring

def test_train_boundary_rejects_bad_input():
  z, scores, _ = _planted(8, 200)
  with pytest.raises(UserError, match=r"\[200, 1\]"):
    ifg.train_boundary(z, scores[:150])
  with pytest.raises(UserError, match=r"\[N, 1\]"):
    ifg.train_boundary(z, np.repeat(scores, 2, axis=1))
  with pytest.raises(UserError, match="no training sample"):
    ifg.train_boundary(z, scores, 0.001)
  with pytest.raises(UserError, match="both positive and negative"):
    ifg.fit_linear_svm(z[:10], np.ones(10))
  with pytest.raises(UserError, match="8 dimensions"):
    ifg.train_boundary(z, scores, center=np.zeros(5))
  with pytest.raises(UserError, match=r"\[N, 16\]"):
    latent_codes.check_codes(np.zeros((3, 12)), "z", 16)
  with pytest.raises(UserError, match="unknown latent space"):
    latent_codes.parse_space("s")


def test_rescoring_matrix_on_a_linear_toy_generator():
  # Toy generator x = A w (an 8x8x3 image), attributes = fixed linear read-outs of x; boundaries learned in W.
  rng = np.random.default_rng(11)
  d, k = 12, 3
  A = rng.standard_normal((192, d))
  readouts = np.linalg.lstsq(A.T, np.eye(d)[:k].T, rcond=None)[0].T  # read-out r_i with r_i A = e_i
  predict = lambda w: (w @ A.T) @ readouts.T
  w = rng.standard_normal((6000, d))
  scores = predict(w)
  boundaries = [ifg.train_boundary(w, scores[:, i:i + 1], 0.1) for i in range(k)]
  before = predict(w[:50])
  after = np.stack([predict(ifg.shift_codes(w[:50], b, 2.0)) for b in boundaries])
  matrix = ifg.rescoring_matrix(before, after)
  reference = np.array([[np.mean(after[i, :, j] - before[:, j]) for j in range(k)] for i in range(k)])
  np.testing.assert_allclose(matrix, reference, atol=1e-12)
  assert np.all(np.diag(matrix) > 1.8) and np.all(np.abs(matrix - np.diag(np.diag(matrix))) < 0.2)


def test_dominance_margins_against_a_hand_computed_matrix():
  # 3 edits (one, "other", not an attribute) x 3 attributes on different scales; margins by hand, in score stds.
  matrix = np.array([[2.0, 0.1, -3.0],    # edit a: +1.0 std of a, +0.1 of b, -0.3 of c
                     [0.4, -0.5, 1.0],    # edit b
                     [9.0, 9.0, 9.0]])    # edit "other": no column of its own, so not in the block
  out = ifg.dominance_margins(matrix, [2.0, 1.0, 10.0], ["a", "b", "other"], ["a", "b", "c"])
  assert out["names"] == ["a", "b"]
  np.testing.assert_allclose(out["standardised"], [[1.0, 0.1], [0.2, -0.5]])
  np.testing.assert_allclose(out["rows"], [1.0 / 0.1, 0.5 / 0.2])
  np.testing.assert_allclose(out["cols"], [1.0 / 0.2, 0.5 / 0.1])
  # rows renamed: row 0 is now edit "b", row 1 edit "a"; the block's columns follow the edits' order (b, a)
  out = ifg.dominance_margins(matrix[:2], [2.0, 1.0, 10.0], ["b", "a"], ["a", "b", "c"])
  assert out["names"] == ["b", "a"]
  np.testing.assert_allclose(out["standardised"], [[0.1, 1.0], [-0.5, 0.2]])
  np.testing.assert_allclose(out["rows"], [0.1 / 1.0, 0.2 / 0.5])
  assert ifg.dominance_margins(matrix[:1], [2.0, 1.0, 10.0], ["a"], ["a", "b", "c"])["rows"][0] == np.inf
  with pytest.raises(UserError, match="no edit is named after a measured attribute"):
    ifg.dominance_margins(matrix, [1.0, 1.0, 1.0], ["x", "y", "z"], ["a", "b", "c"])
