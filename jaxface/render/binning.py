"""Visibility by window binning with a static-capacity work list (no gradients).

Every live triangle's inclusive pixel bounding box is cut into `window`×`window` windows; triangle t needs
n_t = ceil(bw/window)·ceil(bh/window) of them. Their prefix sum lays all windows out in one list; a pass
takes `capacity` consecutive slots, maps each slot to its triangle with a binary search of the prefix sum,
tests the window's pixels against the triangle's edge functions, and scatters:
  pass A: zbuf[p] = min(depth)                      (float scatter-min)
  pass B: id[p]   = min(t | depth_t(p) <= zbuf[p])  (int scatter-min; ties -> lowest triangle id)
The first pass's samples are kept and reused by pass B, so the common case computes each sample once.
Windows beyond `capacity` are processed by `lax.while_loop`s (exact; they recompute their samples, so
the depth comparison in pass B allows a few float32 ulps, i.e. the z-fighting band, where the lowest id
wins). Nothing is ever dropped: `overflow` only tells that the slower path ran.

Cost is about capacity·window² edge-function tests per pass plus two scatters, independent of H·W·F.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

_NO_TRI = jnp.iinfo(jnp.int32).max
_ULP_TOL = 8.0 * float(jnp.finfo(jnp.float32).eps)


class Visibility(NamedTuple):
  tri_id: jax.Array       # [H,W] int32, -1 background
  overflow: jax.Array     # [] bool
  num_windows: jax.Array  # [] int32


def _window_counts(setup, window):
  bb = setup.bbox
  nx = (bb[:, 2] - bb[:, 0]) // window + 1
  ny = (bb[:, 3] - bb[:, 1]) // window + 1
  n = jnp.where(setup.alive, nx * ny, 0).astype(jnp.int32)
  return nx.astype(jnp.int32), n


def visibility(setup, resolution, *, window, capacity) -> Visibility:
  """Triangle id per pixel for a `rasterize.TriangleSetup` (inputs must already be stop_gradient'ed).

  Under `jax.vmap` the batch runs as `lax.map` (one image after another) on CPU, where XLA's batched
  scatters and while loops are 2-3x slower per image than sequential ones; elsewhere it is vmapped.
  """
  return _batched_visibility(tuple(int(r) for r in resolution), int(window), int(capacity))(setup)


@functools.lru_cache(maxsize=None)
def _batched_visibility(resolution, window, capacity):
  def base(setup):
    return _visibility(setup, resolution, window=window, capacity=capacity)

  fn = jax.custom_batching.custom_vmap(base)

  @fn.def_vmap
  def _rule(axis_size, in_batched, setup):
    setup = jax.tree.map(lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + x.shape), setup,
                         in_batched[0])
    out = jax.lax.map(fn, setup) if jax.default_backend() == "cpu" else jax.vmap(base)(setup)
    return out, jax.tree.map(lambda _: True, out)

  return fn


def _visibility(setup, resolution, *, window, capacity) -> Visibility:
  h, wd = resolution
  hw = h * wd
  n_tri = setup.bbox.shape[0]
  nx, n = _window_counts(setup, window)
  incl = jnp.cumsum(n)
  total = incl[-1] if n_tri else jnp.int32(0)
  excl = incl - n
  # One row per triangle: floats and ints packed so a slot needs two gathers, not ten.
  fdata = jnp.concatenate([setup.mat.reshape(n_tri, 9), setup.origin, setup.z, setup.w], -1)  # [F,19]
  idata = jnp.concatenate([setup.bbox, nx[:, None], excl[:, None]], -1)  # [F,6]
  offs = jnp.arange(window, dtype=jnp.int32)

  def samples(k):
    """Pixel index (hw = none) and depth of every pixel of the windows in slots [k·cap, (k+1)·cap)."""
    s = k * capacity + jnp.arange(capacity, dtype=jnp.int32)
    t = jnp.minimum(jnp.searchsorted(incl, s, side="right"), n_tri - 1).astype(jnp.int32)
    fd, idd = fdata[t], idata[t]
    local = s - idd[:, 5]
    wx, wy = local % idd[:, 4], local // idd[:, 4]
    cols = (idd[:, 0] + wx * window)[:, None, None] + offs[None, None, :]  # [C,1,T]
    rows = (idd[:, 1] + wy * window)[:, None, None] + offs[None, :, None]  # [C,T,1]
    ok = (s < total)[:, None, None] & (cols <= idd[:, 2, None, None]) & (rows <= idd[:, 3, None, None])
    du = (cols.astype(jnp.float32) - fd[:, 9, None, None]) - fd[:, 11, None, None]
    dv = (rows.astype(jnp.float32) - fd[:, 10, None, None]) - fd[:, 12, None, None]
    c = [fd[:, 3 * i, None, None] * du + fd[:, 3 * i + 1, None, None] * dv + fd[:, 3 * i + 2, None, None]
         for i in range(3)]
    csum = c[0] + c[1] + c[2]
    ok &= (c[0] >= 0) & (c[1] >= 0) & (c[2] >= 0) & (csum > 0)
    cz = c[0] * fd[:, 13, None, None] + c[1] * fd[:, 14, None, None] + c[2] * fd[:, 15, None, None]
    cw = c[0] * fd[:, 16, None, None] + c[1] * fd[:, 17, None, None] + c[2] * fd[:, 18, None, None]
    depth = cz / jnp.where(cw != 0, cw, 1.0)
    ok &= (cw > 0) & (depth >= -1.0) & (depth <= 1.0)
    pix = jnp.where(ok, rows * wd + cols, hw).reshape(-1)
    tt = jnp.broadcast_to(t[:, None, None], ok.shape).reshape(-1)
    return pix, depth.reshape(-1), tt

  def depth_pass(zbuf, smp):
    pix, depth, _ = smp
    return zbuf.at[pix].min(depth, mode="drop")

  def id_pass(ids, zbuf, smp):
    pix, depth, t = smp
    zp = zbuf[jnp.minimum(pix, hw - 1)]
    hit = (pix < hw) & (depth <= zp + _ULP_TOL * jnp.maximum(jnp.abs(zp), 1e-3))
    return ids.at[pix].min(jnp.where(hit, t, _NO_TRI), mode="drop")

  n_pass = (total + capacity - 1) // capacity
  first = samples(jnp.int32(0))
  zbuf = depth_pass(jnp.full((hw,), jnp.inf, jnp.float32), first)
  zbuf = jax.lax.while_loop(
      lambda kz: kz[0] < n_pass,
      lambda kz: (kz[0] + 1, depth_pass(kz[1], samples(kz[0]))),
      (jnp.int32(1), zbuf))[1]
  ids = id_pass(jnp.full((hw,), _NO_TRI, jnp.int32), zbuf, first)
  ids = jax.lax.while_loop(
      lambda ki: ki[0] < n_pass,
      lambda ki: (ki[0] + 1, id_pass(ki[1], zbuf, samples(ki[0]))),
      (jnp.int32(1), ids))[1]
  tri_id = jnp.where(ids == _NO_TRI, -1, ids).reshape(h, wd)
  return Visibility(tri_id=tri_id, overflow=total > capacity, num_windows=total)
