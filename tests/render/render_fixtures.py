"""Small meshes and face models shared by the render tests (kept tiny: CI compiles every shape)."""

import numpy as np

from jaxface.render import face_model as fm_lib


def grid_mesh(nx=9, ny=11, sx=0.75, sy=0.95, depth=0.6):
  """A dome-shaped grid patch facing +z (decimetres), triangles counter-clockwise seen from +z."""
  xs, ys = np.linspace(-sx, sx, nx), np.linspace(-sy, sy, ny)
  x, y = np.meshgrid(xs, ys)
  z = depth * np.sqrt(np.clip(1.0 - (x / (1.2 * sx)) ** 2 - (y / (1.2 * sy)) ** 2, 0.0, None))
  verts = np.stack([x, y, z], -1).reshape(-1, 3).astype(np.float32)
  idx = np.arange(nx * ny).reshape(ny, nx)
  a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
  tri = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)
  return verts, tri


def small_face_model(seed=0, n_id=5, n_exp=4, n_tex=3):
  verts, tri = grid_mesh()
  rng = np.random.default_rng(seed)
  v = len(verts)
  smooth = lambda k, s: (rng.normal(size=(1, 3, k)) * np.sin(verts[:, :1, None] * 3 + rng.normal(size=(1, 3, k)))  # noqa
                         * s).astype(np.float32)
  albedo = (0.55 + 0.3 * np.sin(verts[:, :2] @ rng.normal(size=(2, 3)) * 4)).astype(np.float32)
  return fm_lib.make_face_model(
      name="small", mean_shape=verts, id_basis=smooth(n_id, 0.05), exp_basis=smooth(n_exp, 0.03),
      mean_albedo=albedo, albedo_basis=smooth(n_tex, 0.1), tri=tri,
      landmarks68=rng.integers(0, v, 68), skin_mask=(verts[:, 1] < 0.5).astype(np.float32))


def random_coeffs(fm, seed=0, scale=0.5):
  rng = np.random.default_rng(seed)
  f = lambda n, s: (rng.normal(size=n) * s).astype(np.float32)  # noqa: E731
  return dict(id=f(fm.n_id, scale), exp=f(fm.n_exp, scale), tex=f(fm.n_tex, scale),
              angle=f(3, 0.15), gamma=f(27, 0.1), trans=np.array([0.02, -0.03, 0.1], np.float32))
