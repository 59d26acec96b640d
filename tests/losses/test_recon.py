"""R-Net losses (jaxface/losses/recon.py): known values, an independent numpy projection, finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface.data import synthetic, synthetic_factors as sf
from jaxface.losses import recon
from jaxface.render import face_model as fm_lib
from jaxface.train import rnet
from jaxface.runs import rnet as rnet_run


def _np_rotation(a):
  cx, cy, cz = np.cos(a)
  sx, sy, sz = np.sin(a)
  rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
  ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
  rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
  return rz @ ry @ rx


def _np_landmarks(fm, f, focal, res):
  """Pinhole at (0, 0, 10) dm looking down -z, focal given at 256 px, y down, pixel centres at +0.5."""
  idx = np.asarray(fm.landmarks68)
  v = (np.asarray(fm.mean_shape, np.float64)[idx] + np.asarray(fm.id_basis, np.float64)[idx] @ f["id"]
       + np.asarray(fm.exp_basis, np.float64)[idx] @ f["exp"])
  p = v @ _np_rotation(np.asarray(f["angle"], np.float64)).T + f["trans"]
  fpx = focal * res / 256.0
  depth = 10.0 - p[:, 2]
  return np.stack([fpx * p[:, 0] / depth + res / 2, res / 2 - fpx * p[:, 1] / depth], -1)


def test_landmark_points_match_numpy_projection_and_the_world_render():
  cfg = sf.WorldConfig()
  fm, cam = rnet_run.face_model(cfg.level), rnet_run.camera(cfg)
  fs = [sf.sample_factors(i, cfg) for i in (3, 11)]
  for f in fs:
    got = np.asarray(recon.landmark_points(fm, {k: jnp.asarray(f[k]) for k in ("id", "exp", "angle", "trans")},
                                           cam, 64))
    np.testing.assert_allclose(got, _np_landmarks(fm, f, cfg.focal, 64), atol=2e-3)
  # The synthetic renderer's own landmarks68 for the true coefficients are the same points.
  batch = sf.stack(fs)
  world = jax.jit(lambda f: synthetic.render_batch(f, 16, cfg))({k: batch[k] for k in synthetic.RENDER_KEYS})
  coeffs = {k: jnp.asarray(batch[k]) for k in ("id", "exp", "angle", "trans")}
  ours = jax.vmap(lambda c: recon.landmark_points(fm, c, cam, 16))(coeffs)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(world["landmarks68"]), atol=1e-3)


def test_coefficient_loss_per_group_units_and_weights():
  lay = fm_lib.CoeffLayout(n_id=2, n_exp=3, n_tex=1)
  slices = recon.group_slices(lay, fm_lib.COEFF_ORDERS["disco"])
  assert slices["id"] == (0, 2) and slices["tex"] == (2, 3) and slices["exp"] == (3, 6)
  assert slices["trans"] == (lay.total - 3, lay.total)
  target = jnp.asarray(np.random.default_rng(0).normal(size=(4, lay.total)), jnp.float32)
  scale = jnp.linspace(0.5, 2.0, lay.total)
  total, terms = recon.coefficient_loss(target, target, scale, slices)
  assert float(total) == 0.0 and all(float(v) == 0.0 for v in terms.values())
  a, b = slices["exp"]
  pred = target.at[:, a:b].add(2.0 * scale[a:b])  # two standard deviations on every exp dimension
  total, terms = recon.coefficient_loss(pred, target, scale, slices, {"exp": 3.0})
  np.testing.assert_allclose(float(terms["exp"]), 4.0, rtol=1e-6)
  assert all(float(v) == 0.0 for k, v in terms.items() if k != "exp")
  np.testing.assert_allclose(float(total), 12.0, rtol=1e-6)


def test_landmark_loss_known_values_and_weights():
  target = jnp.zeros((2, 3, 2))
  pred = target.at[:, :, 0].set(jnp.array([6.4, 0.0, 0.0]))  # point 0 is 10% of a 64-px width off
  np.testing.assert_allclose(float(recon.landmark_loss(pred, target, 64)), 0.01 / 3, rtol=1e-6)
  w = jnp.array([20.0, 1.0, 1.0])
  np.testing.assert_allclose(float(recon.landmark_loss(pred, target, 64, w)), 0.01 * 20 / 22, rtol=1e-6)


def test_photometric_loss_numpy_reference_and_gradient():
  g = np.random.default_rng(1)
  img, ren = g.uniform(size=(2, 5, 5, 3)), g.uniform(size=(2, 5, 5, 3))
  mask = (g.uniform(size=(2, 5, 5)) > 0.4).astype(np.float64)
  ref = (mask * np.linalg.norm(ren - img, axis=-1)).sum() / mask.sum()
  got = recon.photometric_loss(jnp.asarray(ren, jnp.float32), jnp.asarray(img, jnp.float32), jnp.asarray(mask))
  np.testing.assert_allclose(float(got), ref, rtol=1e-5)
  # Finite differences on one rendered pixel inside the mask.
  b, i, j = map(int, np.argwhere(mask > 0)[0])
  grad = jax.grad(lambda r: recon.photometric_loss(r, jnp.asarray(img), jnp.asarray(mask)))(jnp.asarray(ren))
  h = 1e-5
  for c in range(3):
    up, dn = ren.copy(), ren.copy()
    up[b, i, j, c] += h
    dn[b, i, j, c] -= h
    f = lambda r: (mask * np.linalg.norm(r - img, axis=-1)).sum() / mask.sum()
    np.testing.assert_allclose(float(grad[b, i, j, c]), (f(up) - f(dn)) / (2 * h), rtol=1e-3, atol=1e-6)
  # An exact match has zero loss (up to eps) and a finite gradient.
  same = jax.grad(lambda r: recon.photometric_loss(r, jnp.asarray(img), jnp.asarray(mask)))(jnp.asarray(img))
  assert np.isfinite(np.asarray(same)).all()


def test_gamma_mono_loss():
  mono = jnp.tile(jnp.arange(9.0), 3)[None]
  assert float(recon.gamma_mono_loss(mono)) == 0.0
  g = np.random.default_rng(2).normal(size=(2, 27))
  r = g.reshape(2, 3, 9)
  np.testing.assert_allclose(float(recon.gamma_mono_loss(jnp.asarray(g))), ((r - r.mean(1, keepdims=True)) ** 2).mean(),
                             rtol=1e-5)


@pytest.mark.parametrize("order", ["disco", "d3dfr"])
def test_flat_targets_follow_the_order(order):
  f = sf.stack([sf.sample_factors(i) for i in range(2)])
  flat = np.asarray(rnet.flat_targets(f, order))
  back = fm_lib.split_coeffs(flat, rnet_run.layout(), order)
  for k in ("id", "tex", "exp", "angle", "gamma", "trans"):
    np.testing.assert_array_equal(np.asarray(back[k]), f[k])
