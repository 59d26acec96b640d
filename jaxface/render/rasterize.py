"""nvdiffrast's primitive set in pure JAX: rasterize -> interpolate -> antialias.

All functions are unbatched (one image; `jax.vmap` them for batches) and use image row 0 = top, NHWC.
Clip-space input as in OpenGL: a vertex (x, y, z, w) lands at NDC (x/w, y/w) with NDC y pointing up; the
pixel in row r, column c has its centre at NDC ((c + 0.5)·2/W - 1, 1 - (r + 0.5)·2/H). Depth is z/w,
kept where -1 <= z/w <= 1 (near/far clipping) and resolved nearest-wins under a z-buffer.

Design:
1. Visibility (which triangle covers each pixel) is computed under `stop_gradient` by `binning.py`: each
   triangle's pixel bounding box is cut into `window`×`window` pixel windows; the windows of all triangles
   are laid out in one static-capacity work list (`capacity` windows), every window's pixels are tested
   with the triangle's edge functions, and two scatter-min passes (depth, then triangle id) resolve the
   z-buffer. Work is proportional to the covered area, not H·W·F. When the windows exceed `capacity` the
   rest are processed in further passes of a `lax.while_loop` (exact, just slower) and `overflow` is set.
2. Barycentrics and depth are then recomputed differentiably per pixel from per-triangle 3×3 matrices
   gathered by the triangle id, so gradients reach vertex positions for interior pixels.
3. `antialias` (antialias.py) adds analytic edge antialiasing whose blend weights are closed-form functions
   of projected silhouette edges, which gives silhouette/occlusion gradients (nvdiffrast's method).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxface.render import binning
from jaxface.render.antialias import antialias, edge_topology  # noqa: F401  (public API re-export)

# Defaults for the binning work list; see `rasterize` for how to choose them.
DEFAULT_WINDOW = 2
DEFAULT_CAPACITY_PER_TRI = 1.5


class Fragments(NamedTuple):
  """Rasterizer output for one image (a pytree).

  tri_id:      [H,W] int32, index of the visible triangle, -1 for background.
  bary:        [H,W,3] float32 perspective-correct barycentrics of that triangle (0 on background);
               differentiable w.r.t. the vertex positions.
  depth:       [H,W] float32 z/w of the visible surface (1.0 = far plane on background); differentiable.
  overflow:    [] bool, True when the windows did not fit `capacity` and extra passes ran (the result is
               still exact; raise `capacity` if this is common, for speed).
  num_windows: [] int32, windows the triangles needed (capacity planning).
  """
  tri_id: jax.Array
  bary: jax.Array
  depth: jax.Array
  overflow: jax.Array
  num_windows: jax.Array


class TriangleSetup(NamedTuple):
  """Per-triangle quantities shared by visibility and the differentiable pass ([F, ...]).

  Work happens in pixel units: column/row of a pixel centre are the integers (c, r). For a pixel,
  c = mat @ (c - ox_hi - ox_lo, r - oy_hi - oy_lo, 1) are unnormalised perspective barycentrics (all >= 0
  and sum > 0 inside); the origin is vertex 0's screen position in double-float (hi + lo) so that the
  offsets of sub-pixel triangles keep full float32 relative precision.
  """
  mat: jax.Array      # [F,3,3]
  origin: jax.Array   # [F,4]: (ox_hi, oy_hi, ox_lo, oy_lo) pixel units (0 for the homogeneous path)
  z: jax.Array        # [F,3] clip z of the vertices
  w: jax.Array        # [F,3] clip w of the vertices
  bbox: jax.Array     # [F,4] int32 pixel bounds (col_min, row_min, col_max, row_max), inclusive
  alive: jax.Array    # [F] bool: may cover a pixel (not culled, not degenerate, in the frustum)


def pixel_ndc(rows, cols, hw):
  """NDC (u, v) of pixel centres at integer rows/cols (row 0 = top, NDC v points up)."""
  h, w = hw
  u = (cols.astype(jnp.float32) + 0.5) * (2.0 / w) - 1.0
  v = 1.0 - (rows.astype(jnp.float32) + 0.5) * (2.0 / h)
  return u, v


# --- double-float helpers (Dekker/Veltkamp; exact without FMA, so XLA's plain f32 ops suffice) ---

def _split(a):
  c = 4097.0 * a
  hi = c - (c - a)
  return hi, a - hi


def _two_prod(a, b):
  p = a * b
  ah, al = _split(a)
  bh, bl = _split(b)
  return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _two_sum(a, b):
  s = a + b
  bb = s - a
  return s, (a - (s - bb)) + (b - bb)


def _df_affine_div(x, w, scale, offset):
  """(x / w)·scale + offset as a double-float (hi, lo)."""
  q = x / w
  p, e = _two_prod(q, w)
  r = ((x - p) - e) / w  # x/w = q + r
  s, e2 = _two_prod(q, jnp.float32(scale))
  hi, e3 = _two_sum(s, jnp.float32(offset))
  lo = e2 + r * scale + e3
  return _two_sum(hi, lo)


def triangle_setup(pos_clip, tri, resolution, cull_backfaces=False):
  """Computes `TriangleSetup` for all triangles (differentiable in `pos_clip` through mat/origin/z/w).

  Triangles with all w > 0 use screen-space edge functions relative to vertex 0 in pixel units, with
  double-float vertex positions (well conditioned for the sub-pixel triangles of a face mesh); triangles
  crossing w = 0 use Olano-Greer homogeneous inversion (no clipping needed) and cover the whole viewport.
  """
  h, wd = resolution
  pos = pos_clip.astype(jnp.float32)
  vw = pos[:, 3]
  vfront = vw > 1e-8
  vws = jnp.where(vfront, vw, 1.0)
  # Vertex screen positions in pixel units (x right, y down, pixel centres at integers), double-float.
  xh, xl = _df_affine_div(pos[:, 0], vws, wd / 2.0, wd / 2.0 - 0.5)
  yh, yl = _df_affine_div(pos[:, 1], vws, -h / 2.0, h / 2.0 - 0.5)
  p = pos[tri]  # [F,3,4]
  x, y, z, w = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
  front = jnp.all(w > 1e-8, axis=-1)
  txh, txl, tyh, tyl = xh[tri], xl[tri], yh[tri], yl[tri]
  # Screen-space path: offsets of vertices 1, 2 from vertex 0.
  dx1 = (txh[:, 1] - txh[:, 0]) + (txl[:, 1] - txl[:, 0])
  dx2 = (txh[:, 2] - txh[:, 0]) + (txl[:, 2] - txl[:, 0])
  dy1 = (tyh[:, 1] - tyh[:, 0]) + (tyl[:, 1] - tyl[:, 0])
  dy2 = (tyh[:, 2] - tyh[:, 0]) + (tyl[:, 2] - tyl[:, 0])
  d = dx1 * dy2 - dy1 * dx2
  d_ok = jnp.abs(d) > 1e-30
  ds = jnp.where(d_ok, d, 1.0)
  zero = jnp.zeros_like(d)
  # Rows give the 2-D barycentrics b0, b1, b2 of the pixel offset (dx, dy) from vertex 0.
  n_scr = jnp.stack([
      jnp.stack([-(dy2 - dy1), dx2 - dx1, d], -1),
      jnp.stack([dy2, -dx2, zero], -1),
      jnp.stack([-dy1, dx1, zero], -1)], axis=1) / ds[:, None, None]
  ws = jnp.where(front[:, None], w, 1.0)
  mat_scr = n_scr / ws[:, :, None]  # perspective weights b_i / w_i
  # Homogeneous path: c = M^-1 (u, v, 1), M = [[x], [y], [w]] (columns = vertices), (u, v, 1) = A (c, r, 1).
  m = jnp.stack([x, y, w], axis=1)
  adj = _adjugate3(m)
  det = jnp.sum(m[:, 0, :] * adj[:, :, 0], axis=-1)
  det_ok = jnp.abs(det) > 1e-30
  inv = adj / jnp.where(det_ok, det, 1.0)[:, None, None]
  # inv @ A written out (a batched 3x3 matmul is slow on XLA:CPU and imprecise on TPU).
  mat_hom = jnp.stack([inv[..., 0] * (2.0 / wd), inv[..., 1] * (-2.0 / h),
                       inv[..., 0] * (1.0 / wd - 1.0) + inv[..., 1] * (1.0 - 1.0 / h) + inv[..., 2]], -1)
  mat = jnp.where(front[:, None, None], mat_scr, mat_hom)
  origin = jnp.where(front[:, None], jnp.stack([txh[:, 0], tyh[:, 0], txl[:, 0], tyl[:, 0]], -1), 0.0)
  # Facing: counter-clockwise in NDC (y up) is front, as in OpenGL; pixel y points down, so d < 0.
  ccw = jnp.where(front, d < 0, det > 0)
  # Frustum rejection: all three vertices outside one clip plane.
  outside = (jnp.all(x > w, -1) | jnp.all(x < -w, -1) | jnp.all(y > w, -1) | jnp.all(y < -w, -1)
             | jnp.all(z > w, -1) | jnp.all(z < -w, -1) | jnp.all(w <= 0, -1))
  alive = jnp.where(front, d_ok, det_ok) & ~outside
  if cull_backfaces:
    alive &= ccw
  # Pixel bounding boxes (inclusive), a hair conservative; the inside test decides exactly.
  big = 4.0 * max(h, wd)
  tx, ty = txh + txl, tyh + tyl
  tol = 1e-3
  cmin = jnp.where(front, jnp.ceil(jnp.clip(tx.min(-1) - tol, -big, big)), 0.0)
  cmax = jnp.where(front, jnp.floor(jnp.clip(tx.max(-1) + tol, -big, big)), wd - 1.0)
  rmin = jnp.where(front, jnp.ceil(jnp.clip(ty.min(-1) - tol, -big, big)), 0.0)
  rmax = jnp.where(front, jnp.floor(jnp.clip(ty.max(-1) + tol, -big, big)), h - 1.0)
  bbox = jnp.stack([jnp.maximum(cmin, 0), jnp.maximum(rmin, 0), jnp.minimum(cmax, wd - 1),
                    jnp.minimum(rmax, h - 1)], -1).astype(jnp.int32)
  alive &= (bbox[:, 0] <= bbox[:, 2]) & (bbox[:, 1] <= bbox[:, 3])
  return TriangleSetup(mat=mat, origin=origin, z=z, w=w, bbox=bbox, alive=alive)


def _adjugate3(m):
  """Adjugate of [...,3,3] matrices (so that m @ adj = det · I)."""
  a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
  d, e, f = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
  g, h, i = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
  return jnp.stack([
      jnp.stack([e * i - f * h, c * h - b * i, b * f - c * e], -1),
      jnp.stack([f * g - d * i, a * i - c * g, c * d - a * f], -1),
      jnp.stack([d * h - e * g, b * g - a * h, a * e - b * d], -1)], axis=-2)


def weights_at(mat, origin, cols, rows):
  """Unnormalised perspective barycentric weights c [...,3] at pixel centres (cols, rows) (broadcasting)."""
  dx = (cols.astype(jnp.float32) - origin[..., 0]) - origin[..., 2]
  dy = (rows.astype(jnp.float32) - origin[..., 1]) - origin[..., 3]
  return mat[..., 0] * dx[..., None] + mat[..., 1] * dy[..., None] + mat[..., 2]


def rasterize(pos_clip, tri, resolution, *, window=DEFAULT_WINDOW, capacity=None, cull_backfaces=False):
  """Rasterizes one mesh: clip-space vertices [V,4] f32 + triangles [F,3] i32 -> `Fragments`.

  resolution: (H, W), static. window: side of the pixel windows triangles are binned into (static; 2 suits
  meshes whose triangles are about a pixel, e.g. a 70k-triangle face at 224-256 px; use 4-8 for coarse
  meshes). capacity: windows processed per pass (static; default ceil(1.5·F)); more windows than that
  are handled exactly by extra passes and flagged in `Fragments.overflow`. cull_backfaces drops
  clockwise (in NDC) triangles.

  Visibility is piecewise constant, so it runs on stop_gradient'ed inputs; bary and depth are recomputed
  differentiably from per-triangle matrices gathered by id.
  """
  h, wd = int(resolution[0]), int(resolution[1])
  tri = jnp.asarray(tri, jnp.int32)
  n_tri = tri.shape[0]
  if capacity is None:
    capacity = max(int(DEFAULT_CAPACITY_PER_TRI * n_tri + 0.999), 64)
  setup = triangle_setup(pos_clip, tri, (h, wd), cull_backfaces=cull_backfaces)
  vis = binning.visibility(jax.tree.map(jax.lax.stop_gradient, setup), (h, wd), window=int(window),
                           capacity=int(capacity))
  bary, depth = barycentrics_from_ids(setup, vis.tri_id, (h, wd))
  return Fragments(tri_id=vis.tri_id, bary=bary, depth=depth, overflow=vis.overflow,
                   num_windows=vis.num_windows)


def barycentrics_from_ids(setup: TriangleSetup, tri_id, resolution):
  """Differentiable perspective-correct barycentrics [H,W,3] and depth z/w [H,W] for given ids."""
  h, wd = resolution
  covered = tri_id >= 0
  tid = jnp.maximum(tri_id, 0)
  mat, origin = setup.mat[tid], setup.origin[tid]
  rows, cols = jnp.meshgrid(jnp.arange(h), jnp.arange(wd), indexing="ij")
  c = weights_at(mat, origin, cols, rows)
  s = jnp.sum(c, -1, keepdims=True)
  s = jnp.where(covered[..., None] & (jnp.abs(s) > 0), s, 1.0)
  bary = c / s
  zw = jnp.sum(bary * setup.z[tid], -1) / _safe(jnp.sum(bary * setup.w[tid], -1))
  bary = jnp.where(covered[..., None], bary, 0.0)
  depth = jnp.where(covered, zw, 1.0)
  return bary, depth


def _safe(x):
  return jnp.where(jnp.abs(x) > 1e-30, x, 1.0)


def interpolate(attr, frags: Fragments, tri):
  """Interpolates vertex attributes [V,C] to pixels [H,W,C] with the fragments' barycentrics.

  Background pixels get 0. Differentiable w.r.t. attr and (through frags.bary) vertex positions.
  """
  tri = jnp.asarray(tri, jnp.int32)
  tid = jnp.maximum(frags.tri_id, 0)
  corner = attr[tri[tid]]  # [H,W,3,C]
  return jnp.einsum("hwk,hwkc->hwc", frags.bary.astype(attr.dtype), corner)


__all__ = ["Fragments", "TriangleSetup", "rasterize", "interpolate", "antialias", "edge_topology",
           "triangle_setup", "barycentrics_from_ids", "pixel_ndc", "weights_at"]
