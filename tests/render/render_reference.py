"""An independent rasterizer for the tests: float64 numpy, one triangle at a time, no binning.

For each triangle with all w > 0: project to NDC, visit the pixel centres inside its bounding box, keep
those with all three 2-D edge-function barycentrics >= 0 and -1 <= z/w <= 1, and z-test (strict <, so
the lowest triangle id wins exact ties, as jaxface's rasterizer does). Perspective-correct barycentrics
are b_i ∝ λ_i / w_i. Row 0 = top, pixel centres at NDC ((c+.5)·2/W - 1, 1 - (r+.5)·2/H).
"""

import numpy as np


def rasterize_ref(pos_clip, tri, resolution):
  h, w = resolution
  pos = np.asarray(pos_clip, np.float64)
  tri = np.asarray(tri, np.int64)
  ids = np.full((h, w), -1, np.int64)
  zbuf = np.full((h, w), np.inf)
  bary = np.zeros((h, w, 3))
  p = pos[tri]  # [F,3,4]
  ww = p[..., 3]
  ok = (ww > 0).all(1)
  u = p[..., 0] / np.where(ok[:, None], ww, 1)
  v = p[..., 1] / np.where(ok[:, None], ww, 1)
  cmin = np.ceil((u.min(1) + 1) * w / 2 - 0.5).clip(0, w)
  cmax = np.floor((u.max(1) + 1) * w / 2 - 0.5).clip(-1, w - 1)
  rmin = np.ceil((1 - v.max(1)) * h / 2 - 0.5).clip(0, h)
  rmax = np.floor((1 - v.min(1)) * h / 2 - 0.5).clip(-1, h - 1)
  live = ok & (cmin <= cmax) & (rmin <= rmax)
  for t in np.nonzero(live)[0]:
    rr, cc = np.meshgrid(np.arange(rmin[t], rmax[t] + 1), np.arange(cmin[t], cmax[t] + 1), indexing="ij")
    rr, cc = rr.astype(np.int64).ravel(), cc.astype(np.int64).ravel()
    px = (cc + 0.5) * 2 / w - 1
    py = 1 - (rr + 0.5) * 2 / h
    (x0, x1, x2), (y0, y1, y2) = u[t], v[t]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    if area == 0:
      continue
    l0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) / area
    l1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) / area
    l2 = 1 - l0 - l1
    lam = np.stack([l0, l1, l2], 1)
    inside = (lam >= 0).all(1)
    zw = lam @ (p[t, :, 2] / p[t, :, 3])
    inside &= (zw >= -1) & (zw <= 1)
    rr, cc, lam, zw = rr[inside], cc[inside], lam[inside], zw[inside]
    closer = zw < zbuf[rr, cc]
    rr, cc, lam, zw = rr[closer], cc[closer], lam[closer], zw[closer]
    persp = lam / p[t, :, 3]
    persp /= persp.sum(1, keepdims=True)
    ids[rr, cc] = t
    zbuf[rr, cc] = zw
    bary[rr, cc] = persp
  # Triangles with a vertex behind the eye (w <= 0): solve M c = (u, v, 1) per pixel (Olano-Greer), which
  # needs no clipping; inside = all c >= 0 with sum > 0.
  rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  pix = np.stack([(cc + 0.5) * 2 / w - 1, 1 - (rr + 0.5) * 2 / h, np.ones((h, w))], -1).reshape(-1, 3)
  for t in np.nonzero(~ok & (ww > 0).any(1))[0]:
    m = np.stack([p[t, :, 0], p[t, :, 1], p[t, :, 3]])
    if abs(np.linalg.det(m)) < 1e-30:
      continue
    c = np.linalg.solve(m, pix.T).T
    s = c.sum(1)
    inside = (c >= 0).all(1) & (s > 0)
    zw = (c @ p[t, :, 2]) / np.where(inside, c @ p[t, :, 3], 1)
    inside &= (zw >= -1) & (zw <= 1)
    flat_z = zbuf.reshape(-1)
    upd = inside & (zw < flat_z)
    # Ties with earlier triangles: the lowest id wins.
    upd |= inside & (zw == flat_z) & (ids.reshape(-1) > t)
    ids.reshape(-1)[upd] = t
    flat_z[upd] = zw[upd]
    bary.reshape(-1, 3)[upd] = c[upd] / s[upd, None]
  depth = np.where(ids >= 0, zbuf, 1.0)
  return ids, bary, depth
