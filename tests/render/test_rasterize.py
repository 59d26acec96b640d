"""rasterize/interpolate against the independent numpy reference (render_reference.py), and overflow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from render_reference import rasterize_ref

from jaxface.render import camera as cam_lib
from jaxface.render import facegrid
from jaxface.render import rasterize as R


def random_mesh(seed, n_tri=40, spread=0.9):
  """Random overlapping triangles in front of a perspective camera (w in [2, 6])."""
  rng = np.random.default_rng(seed)
  centers = rng.uniform(-spread, spread, (n_tri, 1, 2))
  xy = centers + rng.normal(scale=0.3, size=(n_tri, 3, 2))
  w = rng.uniform(2.0, 6.0, (n_tri, 3))
  z = rng.uniform(-0.9, 0.9, (n_tri, 3)) * w
  pos = np.concatenate([xy * w[..., None], z[..., None], w[..., None]], -1).reshape(-1, 4)
  tri = np.arange(3 * n_tri).reshape(n_tri, 3)
  return pos.astype(np.float32), tri.astype(np.int32)


# One jitted function for all tests: equal shapes and static arguments reuse the compilation (CI time).
rast = jax.jit(R.rasterize, static_argnames=("resolution", "window", "capacity", "cull_backfaces"))


def compare(pos, tri, hw, **kw):
  frags = rast(jnp.asarray(pos), jnp.asarray(tri), hw, **kw)
  ids, bary, depth = rasterize_ref(pos, tri, hw)
  got = np.asarray(frags.tri_id)
  covered = (ids >= 0) | (got >= 0)
  agree = (ids == got)
  both = agree & (ids >= 0)
  return frags, agree[covered].mean(), both, bary, depth


def assert_matches_reference(frags, agree_frac, both, bary, depth):
  assert agree_frac >= 0.999, agree_frac
  assert both.sum() > 0
  assert np.abs(np.asarray(frags.bary) - bary)[both].max() < 1e-4
  assert np.abs(np.asarray(frags.depth) - depth)[both].max() < 1e-4
  assert np.all(np.asarray(frags.bary)[np.asarray(frags.tri_id) < 0] == 0)


@pytest.mark.parametrize("seed,hw,window", [(0, (48, 64), 2), (1, (48, 64), 2), (2, (40, 48), 4)])
def test_random_meshes_match_reference(seed, hw, window):
  pos, tri = random_mesh(seed, n_tri=40 if window == 2 else 30)
  kw = dict(window=window) if window == 2 else dict(window=window, capacity=4096)
  assert_matches_reference(*compare(pos, tri, hw, **kw))  # big triangles overflow the default capacity: still exact


def test_face_sized_mesh_matches_reference():
  verts, tri = facegrid.face_sized_mesh()
  assert verts.shape == (35709, 3) and tri.shape == (70789, 3)
  res = 80
  cam = cam_lib.perspective(1015.0 * 1.22 * res / 256, res / 2, res / 2, res, res)
  for angles in ([0.0, 0.0, 0.0], [0.2, 0.6, 0.1]):  # frontal, and a strong yaw with self-occlusion
    vw = cam_lib.rigid_transform(jnp.asarray(verts), jnp.asarray(angles), jnp.zeros(3))
    pos = np.asarray(cam_lib.project_clip(cam, vw))
    out = compare(pos, tri, (res, res))
    assert_matches_reference(*out)
    assert not bool(out[0].overflow)
    assert int(out[0].num_windows) <= 1.5 * len(tri)


def test_overflow_is_detected_and_exact():
  pos, tri = random_mesh(3, n_tri=30)
  hw = (40, 48)
  full = rast(jnp.asarray(pos), tri, hw, window=4, capacity=4096)
  small = rast(jnp.asarray(pos), tri, hw, window=4, capacity=16)
  assert not bool(full.overflow) and bool(small.overflow)
  assert int(small.num_windows) == int(full.num_windows) > 3 * 16
  ids, bary, _ = rasterize_ref(pos, tri, hw)
  for f in (full, small):
    got = np.asarray(f.tri_id)
    cov = (ids >= 0) | (got >= 0)
    assert (got == ids)[cov].mean() >= 0.999
  np.testing.assert_array_equal(np.asarray(small.tri_id), np.asarray(full.tri_id))
  np.testing.assert_allclose(np.asarray(small.bary), np.asarray(full.bary), atol=1e-6)


def test_vertices_behind_camera_match_reference():
  # A large triangle with one vertex behind the eye (w < 0) plus a normal one: homogeneous path.
  pos = np.array([[-0.5, -0.5, 0.0, 1.0], [0.5, -0.4, 0.2, 1.0], [0.1, 0.8, -2.0, -1.0],
                  [-0.3, 0.0, -0.5, 2.0], [0.4, 0.1, -0.5, 2.0], [0.0, 0.6, -0.5, 2.0]], np.float32)
  tri = np.array([[0, 1, 2], [3, 4, 5]], np.int32)
  assert_matches_reference(*compare(pos, tri, (32, 32)))


def test_backface_culling_and_clip_planes():
  # Same shapes as the test above ([6,4] vertices, [2,3] triangles, 32x32) to reuse its compilation.
  pos = np.array([[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]] * 2, np.float32)
  ccw = np.array([[0, 1, 2], [0, 1, 2]], np.int32)
  cw = np.array([[0, 2, 1], [0, 2, 1]], np.int32)
  n = lambda f: int((np.asarray(f.tri_id) >= 0).sum())  # noqa: E731
  assert n(rast(pos, ccw, (32, 32), cull_backfaces=True)) > 0
  assert n(rast(pos, cw, (32, 32), cull_backfaces=True)) == 0
  assert n(rast(pos, cw, (32, 32))) > 0
  beyond_far = pos.copy()
  beyond_far[:, 2] = 1.5
  assert n(rast(beyond_far, ccw, (32, 32))) == 0
  behind = pos.copy()
  behind[:, 3] = -1.0
  assert n(rast(behind, ccw, (32, 32))) == 0


def test_interpolate_matches_reference_barycentrics():
  pos, tri = random_mesh(4, n_tri=30)
  hw = (40, 48)
  attr = np.random.default_rng(0).normal(size=(pos.shape[0], 5)).astype(np.float32)
  frags = rast(jnp.asarray(pos), tri, hw, window=4, capacity=4096)
  got = np.asarray(R.interpolate(jnp.asarray(attr), frags, tri))
  ids, bary, _ = rasterize_ref(pos, tri, hw)
  want = np.einsum("hwk,hwkc->hwc", bary, attr[tri[np.maximum(ids, 0)]]) * (ids >= 0)[..., None]
  ok = ids == np.asarray(frags.tri_id)
  np.testing.assert_allclose(got[ok], want[ok], atol=1e-4)
