"""A procedural mesh with exactly the BFM front face's size (35,709 vertices, 70,789 triangles).

No BFM ships with jaxface, yet the renderer's tests and benchmarks must run at the real load: about a
70k-triangle face whose triangles are a pixel wide at 224-256 px. This module builds one: a triangular
lattice cut to an elliptic disk, with a few boundary edges collapsed so that the Euler counts match the
BFM exactly (a disk with F = 70,789 and V = 35,709 has exactly 627 boundary edges), then lifted to a
face-like height field (forehead, cheeks, eye sockets, nose, lips) in decimetres, facing +z.
`procedural_face_model` wraps it as a FaceModel with BFM-sized smooth random bases (80 id, 64 exp, 80 tex)
and a procedural albedo, for benchmarks and pictures of "a 70k face".
"""

import functools

import numpy as np

from jaxface.render.face_model import make_face_model

N_VERTS, N_TRIS = 35709, 70789


def _lattice(n):
  i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
  x = j + 0.5 * (i % 2)
  y = i * np.sqrt(3.0) / 2.0
  idx = np.arange(n * n).reshape(n, n)
  tris = []
  for r in range(n - 1):
    a, b, c, d = idx[r, :-1], idx[r, 1:], idx[r + 1, :-1], idx[r + 1, 1:]
    if r % 2 == 0:
      tris += [np.stack([a, b, c], 1), np.stack([b, d, c], 1)]
    else:
      tris += [np.stack([a, b, d], 1), np.stack([a, d, c], 1)]
  return np.stack([x.ravel() - x.mean(), y.ravel() - y.mean()], 1), np.concatenate(tris)


def _boundary_loop(tri):
  e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
  key = np.minimum(e[:, 0], e[:, 1]) * (tri.max() + 1) + np.maximum(e[:, 0], e[:, 1])
  uniq, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
  b = e[cnt[inv] == 1]
  nxt = dict(zip(b[:, 0].tolist(), b[:, 1].tolist()))
  start = int(b[0, 0])
  loop, v = [start], nxt[start]
  while v != start:
    loop.append(v)
    v = nxt[v]
  return loop


def _disk(n_verts, aspect, lattice_n=280):
  p, tri = _lattice(lattice_n)
  r = (p[:, 0] / aspect) ** 2 + p[:, 1] ** 2
  sel = np.zeros(len(p), bool)
  sel[np.argsort(r, kind="stable")[:n_verts]] = True
  tri = tri[sel[tri].all(1)]
  used = np.unique(tri)
  remap = np.full(len(p), -1)
  remap[used] = np.arange(used.size)
  return p[used], remap[tri]


@functools.lru_cache(maxsize=2)
def face_sized_mesh(aspect=0.8):
  """(verts [35709,3] f32 decimetres, tri [70789,3] i32), counter-clockwise seen from +z."""
  # Boundary edge collapses remove one vertex, one triangle and one boundary edge each: start with
  # m more vertices than wanted, where m is the excess of boundary edges over 627.
  extra = 0
  for _ in range(5):
    p, tri = _disk(N_VERTS + extra, aspect)
    b = 2 * (len(p) - 1) - len(tri)
    if len(p) - (b - 627) == N_VERTS:
      break
    extra = b - 627
  loop = _boundary_loop(tri)
  m = len(p) - N_VERTS
  if m < 0 or len(tri) - m != N_TRIS:
    raise RuntimeError(f"face_sized_mesh: could not match counts ({len(p)}, {len(tri)}, m={m})")
  picks = np.linspace(0, len(loop) - 1, m, endpoint=False).astype(int)
  picks = picks - (picks % 2)  # even positions: chosen edges never share a vertex
  merged = np.arange(len(p))
  pos = p.copy()
  for k in np.unique(picks):
    a, c = loop[k], loop[(k + 1) % len(loop)]
    merged[c] = a
    pos[a] = 0.5 * (p[a] + p[c])
  # Find and drop the one triangle on each collapsed edge, then relabel.
  t2 = merged[tri]
  drop = (t2[:, 0] == t2[:, 1]) | (t2[:, 1] == t2[:, 2]) | (t2[:, 2] == t2[:, 0])
  t2 = t2[~drop]
  used = np.unique(t2)
  remap = np.full(len(p), -1)
  remap[used] = np.arange(used.size)
  tri, p2 = remap[t2], pos[used]
  if len(p2) != N_VERTS or len(tri) != N_TRIS:
    raise RuntimeError(f"face_sized_mesh: got {len(p2)} vertices / {len(tri)} triangles")
  # Normalise to a face-sized ellipse: x in about [-0.75, 0.75] dm, y in about [-0.95, 0.95] dm.
  p2 = p2 / np.abs(p2[:, 1]).max()
  x, y = p2[:, 0] * 0.95, p2[:, 1] * 0.95
  z = face_height(x, y)
  # Orientation: make every triangle counter-clockwise in the xy plane (front-facing from +z).
  v = np.stack([x, y, z], 1).astype(np.float32)
  e1, e2 = v[tri[:, 1], :2] - v[tri[:, 0], :2], v[tri[:, 2], :2] - v[tri[:, 0], :2]
  cw = (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) < 0
  tri[cw] = tri[cw][:, [0, 2, 1]]
  return v, tri.astype(np.int32)


def _bump(x, y, cx, cy, sx, sy):
  return np.exp(-(((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def face_height(x, y):
  """A face-like height field z(x, y) in decimetres (nose tip near z = 1)."""
  r2 = np.clip(1.0 - (x / 0.85) ** 2 - (y / 1.1) ** 2, 0.0, None)
  z = 0.62 * np.sqrt(r2)
  z += 0.30 * _bump(x, y, 0.0, -0.05, 0.09, 0.28)   # nose ridge
  z += 0.12 * _bump(x, y, 0.0, -0.25, 0.12, 0.08)   # nose tip / alae
  z -= 0.10 * (_bump(x, y, -0.3, 0.22, 0.16, 0.09) + _bump(x, y, 0.3, 0.22, 0.16, 0.09))  # eye sockets
  z += 0.05 * (_bump(x, y, -0.3, 0.38, 0.2, 0.05) + _bump(x, y, 0.3, 0.38, 0.2, 0.05))   # brows
  z += 0.05 * _bump(x, y, 0.0, -0.52, 0.2, 0.07)    # lips
  z -= 0.04 * _bump(x, y, 0.0, -0.72, 0.25, 0.08)   # chin fold
  return z


def _landmark_template():
  """68 iBUG-ordered 2-D points (x, y) on the procedural face."""
  t = np.linspace(-1.0, 1.0, 17)
  jaw = np.stack([0.72 * np.sin(t * 1.35), 0.25 - 0.95 * np.cos(t * 1.35) ** 0.8], 1)
  bx = np.linspace(-0.5, -0.12, 5)
  brow_r = np.stack([bx, 0.4 + 0.05 * np.cos((bx + 0.31) * 6)], 1)
  brow_l = brow_r[::-1] * np.array([-1, 1])
  nose = np.array([[0, 0.2], [0, 0.08], [0, -0.05], [0, -0.2], [-0.1, -0.3], [-0.05, -0.32], [0, -0.33],
                   [0.05, -0.32], [0.1, -0.3]])
  ang = np.linspace(0, 2 * np.pi, 7)[:-1]
  eye_r = np.stack([-0.3 - 0.11 * np.cos(ang), 0.22 + 0.04 * np.sin(ang)], 1)
  eye_l = np.stack([0.3 + 0.11 * np.cos(ang + np.pi)[::-1] * -1, 0.22 + 0.04 * np.sin(ang)], 1)
  ang = np.linspace(0, 2 * np.pi, 13)[:-1]
  mouth_o = np.stack([-0.25 * np.cos(ang), -0.52 + 0.08 * np.sin(ang)], 1)
  ang = np.linspace(0, 2 * np.pi, 9)[:-1]
  mouth_i = np.stack([-0.16 * np.cos(ang), -0.52 + 0.03 * np.sin(ang)], 1)
  return np.concatenate([jaw, brow_r, brow_l, nose, eye_r, eye_l, mouth_o, mouth_i])


def procedural_face_model(n_id=80, n_exp=64, n_tex=80, seed=0):
  """A FaceModel on `face_sized_mesh()` with smooth random bases and a procedural albedo (0..1)."""
  v, tri = face_sized_mesh()
  x, y = v[:, 0].astype(np.float64), v[:, 1].astype(np.float64)
  rng = np.random.default_rng(seed)

  def smooth_fields(k, scale):
    # Random low-frequency fields: sums of a few random Gaussian bumps per component.
    out = np.zeros((len(v), 3, k))
    for i in range(k):
      for _ in range(3):
        cx, cy = rng.uniform(-0.7, 0.7), rng.uniform(-0.9, 0.9)
        s = rng.uniform(0.15, 0.5)
        out[:, :, i] += rng.normal(size=3) * _bump(x, y, cx, cy, s, s)[:, None]
    return out * scale / np.sqrt(np.arange(1, k + 1))

  id_basis = smooth_fields(n_id, 0.04)
  exp_basis = smooth_fields(n_exp, 0.02) * np.exp(-((y + 0.4) / 0.5) ** 2)[:, None, None]
  tex_basis = smooth_fields(n_tex, 0.05)
  skin = np.array([0.78, 0.58, 0.47])
  alb = np.tile(skin, (len(v), 1))
  lips = _bump(x, y, 0, -0.52, 0.22, 0.05)[:, None]
  alb = alb * (1 - lips) + np.array([0.65, 0.3, 0.3]) * lips
  brows = (_bump(x, y, -0.3, 0.4, 0.18, 0.03) + _bump(x, y, 0.3, 0.4, 0.18, 0.03))[:, None]
  alb = alb * (1 - brows) + np.array([0.25, 0.17, 0.12]) * brows
  eyes = (_bump(x, y, -0.3, 0.22, 0.08, 0.03) + _bump(x, y, 0.3, 0.22, 0.08, 0.03))[:, None]
  alb = alb * (1 - eyes) + np.array([0.92, 0.92, 0.92]) * eyes
  iris = (_bump(x, y, -0.3, 0.22, 0.025, 0.025) + _bump(x, y, 0.3, 0.22, 0.025, 0.025))[:, None]
  alb = np.clip(alb * (1 - iris) + np.array([0.2, 0.3, 0.45]) * iris, 0, 1)
  tmpl = _landmark_template()
  d = ((v[None, :, :2] - tmpl[:, None, :]) ** 2).sum(-1)
  landmarks = d.argmin(1)
  return make_face_model(name="procedural70k", mean_shape=v, id_basis=id_basis, exp_basis=exp_basis,
                         mean_albedo=alb, albedo_basis=tex_basis, tri=tri, landmarks68=landmarks)
