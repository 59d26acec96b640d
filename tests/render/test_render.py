"""render/render_flow: outputs, no retracing, vmap == per-example, 8-device sharding == 1 device."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from render_fixtures import random_coeffs, small_face_model

from jaxface.render import camera as cam_lib
from jaxface.render import face_model as fm_lib
from jaxface.render import render as render_lib

RES = (24, 24)
FM = small_face_model()
CAM = cam_lib.perspective(100.0, 12.0, 12.0, 24, 24)
TRACES = {"render": 0}


def _render(coeffs):
  TRACES["render"] += 1  # runs only while tracing
  out = render_lib.render(FM, coeffs, CAM, RES)
  return {k: out[k] for k in ("image", "mask", "landmarks", "depth", "tri_id")}


render_one = jax.jit(_render)
render_batch = jax.jit(jax.vmap(_render))


def _batch(n, seed=0):
  cs = [random_coeffs(FM, seed + i) for i in range(n)]
  return {k: jnp.stack([c[k] for c in cs]) for k in cs[0]}, cs


def test_render_outputs_are_consistent():
  coeffs = random_coeffs(FM, 0)
  out = render_one(coeffs)
  ids, mask, img = (np.asarray(out[k]) for k in ("tri_id", "mask", "image"))
  cov = ids >= 0
  assert 50 < cov.sum() < cov.size
  assert np.all(img[~cov & (mask == 0)] == 0)  # black background (DiscoFaceGAN)
  # Antialiased coverage: in [0, 1], 1 inside, blended only next to the silhouette.
  assert np.all((mask >= 0) & (mask <= 1)) and np.mean(mask[cov] == 1) > 0.7 and mask[~cov].max() < 0.5
  assert np.all(np.asarray(out["depth"])[cov] > 8) and np.all(np.asarray(out["depth"])[~cov] == 0)
  # Landmarks: the original pinhole formula u = f·x/(d - z) + c, v up, row = H - v.
  verts = np.asarray(render_lib.face_geometry(FM, {k: jnp.asarray(v) for k, v in coeffs.items()})[0])
  lm = verts[np.asarray(FM.landmarks68)]
  u = 100.0 * lm[:, 0] / (10.0 - lm[:, 2]) + 12.0
  v = 100.0 * lm[:, 1] / (10.0 - lm[:, 2]) + 12.0
  np.testing.assert_allclose(np.asarray(out["landmarks"]), np.stack([u, 24 - v], 1), atol=1e-3)


def test_no_retracing_and_vmap_matches_per_example():
  batch, singles = _batch(8)
  before = TRACES["render"]
  outs = [render_one(c) for c in singles]  # equal shapes: traced at most once (maybe already)
  assert TRACES["render"] - before <= 1
  before = TRACES["render"]
  for c in singles[:3]:
    render_one(c)
  assert TRACES["render"] == before, "render_one retraced for equal shapes"
  got = render_batch(batch)
  before = TRACES["render"]
  render_batch(jax.tree.map(lambda x: x + 0.01, batch))
  assert TRACES["render"] == before, "vmapped render retraced for equal shapes"
  for i, o in enumerate(outs):
    for k in o:
      np.testing.assert_allclose(np.asarray(got[k][i]), np.asarray(o[k]), atol=2e-5, err_msg=k)


def test_sharded_batch_matches_single_device():
  assert jax.device_count() == 8
  batch, _ = _batch(8, seed=10)
  single = render_batch(batch)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  sharded_in = jax.device_put(batch, NamedSharding(mesh, P("data")))
  sharded = render_batch(sharded_in)
  assert sharded["image"].sharding.spec[0] == "data" or len(sharded["image"].sharding.device_set) == 8
  np.testing.assert_array_equal(np.asarray(sharded["tri_id"]), np.asarray(single["tri_id"]))
  for k in single:  # float results may differ in the last bits (different fusion per device count)
    np.testing.assert_allclose(np.asarray(sharded[k]), np.asarray(single[k]), rtol=1e-5, atol=2e-5, err_msg=k)


def test_flow_of_a_translation():
  a = random_coeffs(FM, 3)
  b = dict(a, trans=a["trans"] + np.array([0.05, -0.03, 0.0], np.float32))
  flow, valid = jax.jit(lambda a, b: render_lib.render_flow(FM, a, b, CAM, RES, occlusion_tol=0.3))(a, b)
  out = render_one(a)
  depth, cov = np.asarray(out["depth"]), np.asarray(out["tri_id"]) >= 0
  flow, valid = np.asarray(flow), np.asarray(valid)
  assert not valid[~cov].any()
  # (At 24 px a pixel spans ~0.1 dm, so the nearest-pixel occlusion test needs a loose tolerance here.)
  # The shift is under a pixel and nothing is occluded, so every pixel with a covered 3x3 neighbourhood
  # lands on the face in B and must be valid.
  pad = np.pad(cov, 1)
  inner = np.all([pad[1 + dy:pad.shape[0] - 1 + dy, 1 + dx:pad.shape[1] - 1 + dx]
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
  assert inner.sum() > 50 and valid[inner].all()
  # A translation by t moves a point at camera distance D by f·t/D pixels (y flips: rows go down).
  depth = np.where(cov, depth, 1.0)
  want = np.stack([100.0 * 0.05 / depth, 100.0 * 0.03 / depth], -1)
  np.testing.assert_allclose(flow[cov], want[cov], rtol=2e-3)


def test_coefficient_orders():
  layout = fm_lib.CoeffLayout(n_id=2, n_exp=3, n_tex=4)
  x = jnp.arange(layout.total, dtype=jnp.float32)
  d3 = fm_lib.split_coeffs(x, layout, "d3dfr")
  disco = fm_lib.split_coeffs(x, layout, "disco")
  np.testing.assert_array_equal(d3["exp"], [2, 3, 4])
  np.testing.assert_array_equal(disco["tex"], [2, 3, 4, 5])
  np.testing.assert_array_equal(disco["exp"], [6, 7, 8])
  np.testing.assert_array_equal(d3["gamma"], disco["gamma"])
  for order in ("d3dfr", "disco"):
    np.testing.assert_array_equal(fm_lib.join_coeffs(fm_lib.split_coeffs(x, layout, order), layout, order), x)
  assert fm_lib.CoeffLayout().total == 257
  import pytest
  from jaxface.errors import ConfigError
  with pytest.raises(ConfigError, match="order"):
    fm_lib.split_coeffs(x, layout, "auto")
  with pytest.raises(ConfigError, match="entries"):
    fm_lib.split_coeffs(x[:-1], layout, "disco")


def test_gradient_of_vmapped_render_matches_per_example():
  # Training differentiates vmapped renders (on CPU the visibility pass runs as lax.map inside vmap).
  batch, singles = _batch(2, seed=20)

  def loss(c):
    return jnp.sum(render_lib.render(FM, c, CAM, RES)["image"] ** 2)

  g_batch = jax.jit(jax.grad(lambda b: jnp.sum(jax.vmap(loss)(b))))(batch)
  g_one = jax.jit(jax.grad(loss))
  for i, c in enumerate(singles):
    g = g_one(c)
    for k in ("angle", "gamma", "exp"):
      np.testing.assert_allclose(np.asarray(g_batch[k][i]), np.asarray(g[k]), rtol=1e-4, atol=1e-5, err_msg=k)
    assert float(jnp.abs(g["angle"]).sum()) > 0
