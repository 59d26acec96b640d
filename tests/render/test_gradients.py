"""Finite-difference checks of image-loss gradients: vertex positions (interior pixels through the
barycentrics, silhouette pixels through antialias), vertex colours, SH coefficients, pose, camera."""

import jax
import jax.numpy as jnp
import numpy as np
from render_fixtures import grid_mesh, random_coeffs, small_face_model

from jaxface.render import camera as cam_lib
from jaxface.render import rasterize as R
from jaxface.render import render as render_lib

RES = (28, 32)
CAM = cam_lib.perspective(120.0, 16.0, 14.0, 32, 28)


def _scene():
  verts, tri = grid_mesh()
  rng = np.random.default_rng(1)
  colors = rng.uniform(0.2, 0.9, (len(verts), 3)).astype(np.float32)
  rot = cam_lib.euler_rotation(jnp.array([0.1, 0.35, 0.05]))
  verts = np.asarray(verts @ np.asarray(rot).T)
  return jnp.asarray(verts), jnp.asarray(tri), jnp.asarray(colors)


def _masks(tri_id):
  cov = np.asarray(tri_id) >= 0
  pad = np.pad(cov, 1)
  all_nb = cov & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
  sil = (cov | np.pad(cov, 1)[:-2, 1:-1] | pad[2:, 1:-1] | pad[1:-1, :-2] | pad[1:-1, 2:]) & ~all_nb
  return all_nb, sil


def test_position_and_color_gradients_interior_and_silhouette():
  verts, tri, colors = _scene()
  topo = R.edge_topology(np.asarray(tri))

  # One jitted function (and one gradient) serves every check: CI compiles each once.
  @jax.jit
  def loss_ids(v, c, w_plain, w_aa):
    pos = cam_lib.project_clip(CAM, v)
    frags = R.rasterize(pos, tri, RES)
    img = R.interpolate(c, frags, tri)
    aa = R.antialias(img, frags, pos, tri, topo)
    return jnp.sum(img * w_plain) + jnp.sum(aa * w_aa), frags.tri_id

  grads = jax.jit(jax.grad(lambda v, c, wp, wa: loss_ids(v, c, wp, wa)[0], argnums=(0, 1)))
  ids0 = loss_ids(verts, colors, 0.0, 0.0)[1]
  interior, silhouette = _masks(ids0)
  assert interior.sum() > 100 and silhouette.sum() > 30
  w = np.random.default_rng(2).normal(size=RES + (3,)).astype(np.float32)
  weights = lambda m: jnp.asarray(w * m[..., None] / np.sqrt(m.sum()))  # noqa: E731
  zero = jnp.zeros(RES + (3,), jnp.float32)
  eps = 1e-4
  d = jax.random.normal(jax.random.key(3), verts.shape, jnp.float32)
  cases = {"interior": (weights(interior), zero), "silhouette_aa": (zero, weights(silhouette)),
           "silhouette_plain": (weights(silhouette), zero)}
  got = {}
  for name, (wp, wa) in cases.items():
    analytic = float(jnp.vdot(grads(verts, colors, wp, wa)[0], d))
    (lp, ids_p), (lm, ids_m) = loss_ids(verts + eps * d, colors, wp, wa), loss_ids(verts - eps * d, colors, wp, wa)
    # The finite difference is only meaningful if no pixel changed triangle within +-eps.
    np.testing.assert_array_equal(ids_p, ids_m)
    numeric = float((lp - lm) / (2 * eps))
    assert abs(numeric) > 1e-2, (name, numeric)
    assert abs(analytic - numeric) <= 0.02 * abs(numeric), (name, analytic, numeric)
    got[name] = analytic
  # Silhouette pixels get their position gradient from antialias: without it, it is very different.
  assert abs(got["silhouette_aa"] - got["silhouette_plain"]) > 0.5 * abs(got["silhouette_aa"])
  # Vertex colours (linear, so the difference is exact up to rounding), through antialias.
  wa = jnp.asarray(w) / 30
  dc = jax.random.normal(jax.random.key(5), colors.shape, jnp.float32)
  analytic = float(jnp.vdot(grads(verts, colors, zero, wa)[1], dc))
  numeric = float((loss_ids(verts, colors + 1e-2 * dc, zero, wa)[0]
                   - loss_ids(verts, colors - 1e-2 * dc, zero, wa)[0]) / 2e-2)
  assert abs(numeric) > 1e-2 and abs(analytic - numeric) <= 1e-3 * abs(numeric), (analytic, numeric)


def test_sh_pose_and_camera_gradients():
  fm = small_face_model()
  coeffs = {k: jnp.asarray(v) for k, v in random_coeffs(fm).items()}
  w = jnp.asarray(np.random.default_rng(6).normal(size=RES + (3,)).astype(np.float32)) / 30
  names = ("id", "exp", "tex", "angle", "gamma", "trans")
  sizes = [coeffs[n].shape[0] for n in names]
  offsets = np.cumsum([0] + sizes)

  def loss(flat):  # all coefficient groups, then focal and camera distance, in one vector
    c = {n: flat[offsets[i]:offsets[i + 1]] for i, n in enumerate(names)}
    cam = cam_lib.perspective(flat[-2], 16.0, 14.0, 32, 28, distance=flat[-1])
    out = render_lib.render(fm, c, cam, RES, clip=False)
    return jnp.sum(out["image"] * w) + 0.01 * jnp.sum(out["landmarks"] * w[0, :2, :2].sum())

  x0 = jnp.concatenate([coeffs[n] for n in names] + [jnp.array([120.0, 10.0])])
  f, g = jax.jit(loss), jax.jit(jax.grad(loss))(x0)
  groups = {n: (offsets[i], offsets[i + 1]) for i, n in enumerate(names)}
  groups["camera"] = (len(x0) - 2, len(x0))
  # (eps, rtol): linear groups are exact up to rounding; geometry moves pixels, so eps stays tiny.
  settings = {"gamma": (1e-2, 1e-3), "tex": (1e-2, 1e-3), "angle": (2e-4, 0.03), "trans": (2e-4, 0.03),
              "exp": (2e-3, 0.03), "camera": (2e-3, 0.03)}
  for i, (name, (eps, rtol)) in enumerate(settings.items()):
    lo, hi = groups[name]
    d = jnp.zeros_like(x0).at[lo:hi].set(jax.random.normal(jax.random.key(7 + i), (hi - lo,)))
    analytic = float(jnp.vdot(g, d))
    numeric = float((f(x0 + eps * d) - f(x0 - eps * d)) / (2 * eps))
    assert abs(numeric) > 1e-3, (name, numeric)
    assert abs(analytic - numeric) <= rtol * abs(numeric), (name, analytic, numeric)
