"""Analytic edge antialiasing with silhouette/occlusion gradients (nvdiffrast's `antialias`, in jnp).

For every pair of horizontally or vertically adjacent pixels whose triangle ids differ, the nearer of the
two surfaces ("front"; background is farthest) is examined. Walking from the front pixel's centre towards
the other one, the first edge of the front triangle that is crossed is found; if that edge is a
silhouette (a mesh boundary, or the neighbour across it folds to the same side as the front triangle in
screen space, i.e. away from the viewer) the two colours are blended by how far the edge lies from the
midpoint: with d the distance (pixels, 0..1) from the front pixel's centre to the crossing,
  d >= 0.5: the other pixel += (d - 0.5)·(front colour - other colour)
  d <  0.5: the front pixel += (0.5 - d)·(other colour - front colour).
d is a closed-form function of the projected edge endpoints, so plain autodiff yields gradients w.r.t.
vertex positions at silhouettes and occlusion boundaries, which the hard rasterizer cannot give.
Everything is dense array code over the [H,W-1] and [H-1,W] pixel pairs: no scatters, no sorting.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import programs


def edge_topology(tri):
  """Static mesh analysis, done once per mesh in numpy: [F,3] int32 opposite vertices.

  Entry [t, e] is the vertex opposite edge e = (tri[t,(e+1)%3], tri[t,(e+2)%3]) in the neighbouring
  triangle that shares that edge, or -1 where the edge is on the mesh boundary (or shared by more than
  two triangles, which is then treated as a boundary).
  """
  tri = np.asarray(tri, np.int64).reshape(-1, 3)
  f = tri.shape[0]
  if f == 0:
    return np.zeros((0, 3), np.int32)
  a = np.concatenate([tri[:, 1], tri[:, 2], tri[:, 0]])  # edge e endpoints, e = 0, 1, 2
  b = np.concatenate([tri[:, 2], tri[:, 0], tri[:, 1]])
  opp = np.concatenate([tri[:, 0], tri[:, 1], tri[:, 2]])
  lo, hi = np.minimum(a, b), np.maximum(a, b)
  key = lo * (int(tri.max()) + 1) + hi
  order = np.argsort(key, kind="stable")
  ks = key[order]
  uniq, start, count = np.unique(ks, return_index=True, return_counts=True)
  out = np.full(3 * f, -1, np.int64)
  pairs = start[count == 2]
  i0, i1 = order[pairs], order[pairs + 1]
  out[i0] = opp[i1]
  out[i1] = opp[i0]
  # out is laid out [e*F + t]; back to [t, e].
  return out.reshape(3, f).T.astype(np.int32).copy()


def _screen(pos_clip, hw):
  """Vertex positions in pixel units (x = column, y = row; pixel centres at integers) and w > 0 mask."""
  h, wd = hw
  w = pos_clip[:, 3]
  ok = w > 1e-8
  ws = jnp.where(ok, w, 1.0)
  px = (pos_clip[:, 0] / ws + 1.0) * (wd / 2.0) - 0.5
  py = (1.0 - pos_clip[:, 1] / ws) * (h / 2.0) - 0.5
  return jnp.stack([px, py], -1), ok


def _triangle_table(scr, vis_ok, tri, topo):
  """Per-triangle rows [F,10]: the 3 vertices' pixel positions (x0,y0,x1,y1,x2,y2), then for each edge e
  1.0 if it is a silhouette edge, then 1.0 if all vertices are in front of the eye.

  Whether an edge is a silhouette does not depend on the pixel, so it is decided once per triangle: edge
  e = (v[e+1], v[e+2]) is one when it is a mesh boundary, or when the neighbour's opposite vertex lies on
  the same side of the edge as v[e] in screen space (the surface folds away from the viewer there).
  """
  tv = scr[tri]  # [F,3,2]
  ov = scr[jnp.maximum(topo, 0)]  # [F,3,2]
  sil = []
  for e in range(3):
    p, q, r, o = tv[:, (e + 1) % 3], tv[:, (e + 2) % 3], tv[:, e], ov[:, e]
    ex, ey = q[:, 0] - p[:, 0], q[:, 1] - p[:, 1]
    cross_r = ex * (r[:, 1] - p[:, 1]) - ey * (r[:, 0] - p[:, 0])
    cross_o = ex * (o[:, 1] - p[:, 1]) - ey * (o[:, 0] - p[:, 0])
    sil.append((topo[:, e] < 0) | (cross_r * cross_o > 0) | ~vis_ok[jnp.maximum(topo[:, e], 0)])
  flags = jax.lax.stop_gradient(jnp.stack(sil + [vis_ok[tri].all(-1)], -1).astype(jnp.float32))
  return jnp.concatenate([tv.reshape(-1, 6), flags], -1)


def _pair_blend(color_a, color_b, id_a, id_b, z_a, z_b, pa, pb, table):
  """Blend deltas (for pixel a, for pixel b) for pairs of adjacent pixels with centres pa -> pb.

  pa, pb: [...,2] pixel-centre coordinates (x, y); the segment is axis-aligned and one pixel long.
  """
  diff = id_a != id_b
  za = jnp.where(id_a >= 0, z_a, jnp.inf)
  zb = jnp.where(id_b >= 0, z_b, jnp.inf)
  a_front = za < zb
  front = jnp.where(a_front, id_a, id_b)
  active = diff & (front >= 0)
  row = table[jnp.maximum(front, 0)]  # one gather per pair: [...,10]
  p0 = jnp.where(a_front[..., None], pa, pb)  # front pixel centre
  p1 = jnp.where(a_front[..., None], pb, pa)
  dirx, diry = p1[..., 0] - p0[..., 0], p1[..., 1] - p0[..., 1]  # unit axis vector
  best_d = jnp.full(front.shape, jnp.inf, jnp.float32)
  best_sil = jnp.zeros(front.shape, bool)
  for e in range(3):
    i, j = (e + 1) % 3, (e + 2) % 3
    px, py, qx, qy = row[..., 2 * i], row[..., 2 * i + 1], row[..., 2 * j], row[..., 2 * j + 1]
    # Crossing of the edge p + s (q - p) with the segment p0 + d·dir, d in [0, 1].
    ex, ey = qx - px, qy - py
    den = dirx * ey - diry * ex
    den_ok = jnp.abs(den) > 1e-12
    den_s = jnp.where(den_ok, den, 1.0)
    rx, ry = px - p0[..., 0], py - p0[..., 1]
    d = (rx * ey - ry * ex) / den_s
    s = (rx * diry - ry * dirx) / den_s
    hit = den_ok & (d >= 0) & (d <= 1) & (s >= 0) & (s <= 1)
    better = hit & (d < best_d)
    best_d = jnp.where(better, d, best_d)
    best_sil = jnp.where(better, row[..., 6 + e] > 0, best_sil)
  use = active & (row[..., 9] > 0) & best_sil & jnp.isfinite(best_d)
  d = jnp.where(use, best_d, 0.5)
  col_f = jnp.where(a_front[..., None], color_a, color_b)
  col_o = jnp.where(a_front[..., None], color_b, color_a)
  to_other = jnp.maximum(d - 0.5, 0.0)[..., None] * (col_f - col_o)
  to_front = jnp.maximum(0.5 - d, 0.0)[..., None] * (col_o - col_f)
  delta_a = jnp.where(a_front[..., None], to_front, to_other)
  delta_b = jnp.where(a_front[..., None], to_other, to_front)
  return delta_a, delta_b


def antialias(color, frags, pos_clip, tri, topology=None):
  """Antialiases silhouette edges of `color` [H,W,C] (NHWC, row 0 = top) rendered with `frags`.

  pos_clip [V,4] and tri [F,3] must be what was rasterized; topology is `edge_topology(tri)` (pass it:
  computing it needs concrete triangles, so it cannot happen inside jit). Differentiable w.r.t. color
  and pos_clip (silhouette/occlusion gradients); triangle ids and depths only choose which pairs blend.
  """
  if topology is None:
    if isinstance(tri, jax.core.Tracer):
      raise ValueError("antialias needs topology=edge_topology(tri) when tri is traced (inside jit).")
    topology = edge_topology(np.asarray(tri))
  tri = jnp.asarray(tri, jnp.int32)
  topology = jnp.asarray(topology, jnp.int32)
  h, wd = frags.tri_id.shape
  scr, vis_ok = _screen(pos_clip.astype(jnp.float32), (h, wd))
  table = _triangle_table(scr, vis_ok, tri, topology)
  ids = frags.tri_id
  z = jax.lax.stop_gradient(frags.depth)
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(wd, dtype=jnp.float32),
                            indexing="ij")
  centre = jnp.stack([cols, rows], -1)
  color = programs.materialize(color)  # read at 9 offsets per pixel below: its producers must not be fused in
  out = color
  # Horizontal pairs (r, c) - (r, c + 1).
  da, db = _pair_blend(color[:, :-1], color[:, 1:], ids[:, :-1], ids[:, 1:], z[:, :-1], z[:, 1:],
                       centre[:, :-1], centre[:, 1:], table)
  out = out + jnp.pad(da, ((0, 0), (0, 1), (0, 0))) + jnp.pad(db, ((0, 0), (1, 0), (0, 0)))
  # Vertical pairs (r, c) - (r + 1, c).
  da, db = _pair_blend(color[:-1], color[1:], ids[:-1], ids[1:], z[:-1], z[1:],
                       centre[:-1], centre[1:], table)
  out = out + jnp.pad(da, ((0, 1), (0, 0), (0, 0))) + jnp.pad(db, ((1, 0), (0, 0), (0, 0)))
  return out
