"""`mp468`: jaxface's built-in morphable face model, on the MediaPipe canonical face mesh.

No 3DMM can be downloaded here, so this one is built from the 468-vertex MediaPipe canonical mesh
(Apache-2.0; `jaxface/data/mp468_mesh.npz`, written by `tools/fetch_mediapipe_mesh.py`) plus procedural,
deterministic bases (`mp468_bases.py`). Conventions follow the BFM as DiscoFaceGAN uses it
(see jaxface/render/face_model.py): units are decimetres, the face looks down +z with y up, the
shape is `mean + id_basis·α + exp_basis·β` re-centred on the mean shape's centroid, and the albedo is
per-vertex linear RGB `mean_albedo + albedo_basis·δ`, here in 0..1 (not BFM's 0..255).
Loop subdivision (levels 0–2) smooths the 898-triangle mesh; every basis is defined on the 468 base
vertices and carried to the finer levels by the (linear) subdivision matrix, so coefficients mean the same
at every level and the first 468 vertices of every level are the MediaPipe landmarks.
"""

import functools
import importlib.resources

import numpy as np
import scipy.sparse as sp

from jaxface.errors import AssetError, ConfigError

# --- MediaPipe contour index lists (facts from MediaPipe's face mesh annotations; each list is checked to
# be a chain of mesh edges in tests). "right"/"left" are the subject's: right = -x = image left. ---
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
LIPS_UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_LOWER_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
R_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
R_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
R_EYE_UPPER1 = (247, 30, 29, 27, 28, 56, 190)
R_EYE_UPPER2 = (113, 225, 224, 223, 222, 221, 189)
R_EYE_LOWER1 = (130, 25, 110, 24, 23, 22, 26, 112, 243)
R_EYE_LOWER2 = (226, 31, 228, 229, 230, 231, 232, 233, 244)
R_BROW_UPPER = (156, 70, 63, 105, 66, 107, 55, 193)
R_BROW_LOWER = (35, 124, 46, 53, 52, 65)
NOSE_TIP, NOSE_BOTTOM, NOSE_BRIDGE, NOSE_R_ALA = 1, 2, 168, 98
CHIN, FOREHEAD = 152, 10

# iBUG-68 points on the MediaPipe mesh. Our own choice: jaw points are spaced along the face oval from
# eye-corner height to the chin; brows use the upper brow contour; eyes/mouth the lid and lip contours.
LANDMARKS68 = np.array([
    127, 234, 93, 132, 58, 172, 136, 149, 152, 378, 365, 397, 288, 361, 323, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose 27-35
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer mouth 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner mouth 60-67
], np.int32)

# Per-triangle part labels of the face mesh (the synthetic world adds head/hair/ears/neck/glasses).
SKIN, R_BROW, L_BROW, R_EYE, L_EYE, NOSE, UPPER_LIP, LOWER_LIP, MOUTH = range(9)
FACE_PARTS = ("skin", "r_brow", "l_brow", "r_eye", "l_eye", "nose", "upper_lip", "lower_lip", "mouth")

CM_TO_MODEL = 0.1  # the MediaPipe mesh is in cm; BFM-style models are in decimetres.


@functools.lru_cache(maxsize=1)
def load_mesh():
  """The decoded canonical mesh: dict with vertices [468,3] (cm), uv [468,2], triangles [898,3]."""
  try:
    ref = importlib.resources.files("jaxface.data").joinpath("mp468_mesh.npz")
    with ref.open("rb") as f:
      data = dict(np.load(f))
  except (FileNotFoundError, OSError, ValueError) as e:
    raise AssetError(f"jaxface/data/mp468_mesh.npz is missing or unreadable ({e}); reinstall jaxface or "
                     "regenerate it with `python tools/fetch_mediapipe_mesh.py`") from e
  data["triangles"] = data["triangles"].astype(np.int32)
  return data


def mirror_map(vertices, tol=1e-4):
  """Index of each vertex's mirror image under x -> -x (the canonical mesh is exactly symmetric)."""
  mirrored = vertices * np.array([-1.0, 1.0, 1.0], vertices.dtype)
  d2 = ((vertices[:, None, :] - mirrored[None, :, :]) ** 2).sum(-1)
  idx = d2.argmin(1)
  if np.sqrt(d2[np.arange(len(vertices)), idx]).max() > tol:
    raise ValueError("mesh is not mirror-symmetric")
  return idx.astype(np.int32)


def mirror_list(indices):
  m = mirror_map(load_mesh()["vertices"])
  return tuple(int(m[i]) for i in indices)


def _edge_key(a, b):
  return (a, b) if a < b else (b, a)


def loop_subdivide(n_verts, tri):
  """One step of Loop subdivision (with the boundary rules of Hoppe et al. 1994).

  Returns (S, new_tri, parent): S is a sparse [V', V] matrix so new_vertices = S @ vertices; new_tri keeps the
  orientation of `tri`; parent[f'] is the coarse triangle each fine triangle came from.
  """
  edge_opp = {}
  for f, (a, b, c) in enumerate(tri):
    for u, v, w in ((a, b, c), (b, c, a), (c, a, b)):
      edge_opp.setdefault(_edge_key(u, v), []).append(w)
  edges = sorted(edge_opp)
  edge_id = {e: n_verts + i for i, e in enumerate(edges)}
  neighbours = [set() for _ in range(n_verts)]
  boundary_nbrs = [[] for _ in range(n_verts)]
  for (u, v), opp in edge_opp.items():
    neighbours[u].add(v)
    neighbours[v].add(u)
    if len(opp) == 1:
      boundary_nbrs[u].append(v)
      boundary_nbrs[v].append(u)
  rows, cols, vals = [], [], []

  def put(r, c, w):
    rows.append(r)
    cols.append(c)
    vals.append(w)

  for i in range(n_verts):  # even (old) vertices
    if boundary_nbrs[i]:
      put(i, i, 0.75)
      for j in boundary_nbrs[i]:
        put(i, j, 0.125)
    else:
      n = len(neighbours[i])
      beta = (0.625 - (0.375 + 0.25 * np.cos(2 * np.pi / n)) ** 2) / n
      put(i, i, 1.0 - n * beta)
      for j in neighbours[i]:
        put(i, j, beta)
  for (u, v), opp in edge_opp.items():  # odd (edge) vertices
    r = edge_id[(u, v)]
    if len(opp) == 2:
      for j, w in ((u, 0.375), (v, 0.375), (opp[0], 0.125), (opp[1], 0.125)):
        put(r, j, w)
    else:
      put(r, u, 0.5)
      put(r, v, 0.5)
  S = sp.csr_matrix((vals, (rows, cols)), shape=(n_verts + len(edges), n_verts))
  new_tri, parent = [], []
  for f, (a, b, c) in enumerate(tri):
    ab, bc, ca = edge_id[_edge_key(a, b)], edge_id[_edge_key(b, c)], edge_id[_edge_key(c, a)]
    new_tri += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
    parent += [f] * 4
  return S, np.asarray(new_tri, np.int32), np.asarray(parent, np.int32)


@functools.lru_cache(maxsize=3)
def subdivision(level):
  """(S [V_level, 468] sparse, triangles, parent-at-level-0 per triangle) for Loop level 0..2."""
  if level not in (0, 1, 2):
    raise ConfigError(f"mp468 subdivision level must be 0, 1 or 2, got {level!r}")
  tri = load_mesh()["triangles"]
  S = sp.identity(468, format="csr")
  parent = np.arange(len(tri), dtype=np.int32)
  for _ in range(level):
    S_step, tri, p = loop_subdivide(S.shape[0], tri)
    S = (S_step @ S).tocsr()
    parent = parent[p]
  return S, tri, parent


def vertex_adjacency(n_verts, tri):
  rows = np.concatenate([tri[:, 0], tri[:, 1], tri[:, 2], tri[:, 1], tri[:, 2], tri[:, 0]])
  cols = np.concatenate([tri[:, 1], tri[:, 2], tri[:, 0], tri[:, 0], tri[:, 1], tri[:, 2]])
  return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_verts, n_verts)).astype(bool)


def _hops_from(adj, sources, blocked=()):
  """Graph distance (hops) from `sources` to every vertex, never passing through `blocked`."""
  n = adj.shape[0]
  dist = np.full(n, np.inf)
  frontier = [s for s in sources if s not in blocked]
  dist[frontier] = 0
  blocked = set(blocked)
  d = 0
  while frontier:
    d += 1
    nxt = []
    for u in frontier:
      for v in adj.indices[adj.indptr[u]:adj.indptr[u + 1]]:
        if dist[v] == np.inf and v not in blocked:
          dist[v] = d
          nxt.append(v)
    frontier = nxt
  return dist


@functools.lru_cache(maxsize=1)
def regions():
  """Level-0 vertex sets and per-triangle part labels (see FACE_PARTS), from contours and geometry."""
  mesh = load_mesh()
  v, tri = mesh["vertices"], mesh["triangles"]
  adj = vertex_adjacency(468, tri)
  outer = set(LIPS_UPPER_OUTER) | set(LIPS_LOWER_OUTER)
  inner = set(LIPS_UPPER_INNER) | set(LIPS_LOWER_INNER)
  # Lips: what the outer lip loop encloses (not reachable from the forehead without crossing it).
  outside = _hops_from(adj, [FOREHEAD], blocked=outer) < np.inf
  lips = np.array([i in outer or not outside[i] for i in range(468)])
  corners = {61, 291, 78, 308}
  upper_d = _hops_from(adj, list(set(LIPS_UPPER_OUTER) | set(LIPS_UPPER_INNER)))
  lower_d = _hops_from(adj, list(set(LIPS_LOWER_OUTER) | set(LIPS_LOWER_INNER)))
  lower_lip = lips & (lower_d < upper_d)
  lower_lip[list(set(LIPS_LOWER_OUTER) | set(LIPS_LOWER_INNER) - corners)] = True
  lower_lip[list(corners)] = False
  upper_lip = lips & ~lower_lip & ~np.isin(np.arange(468), list(corners))
  mirror = mirror_map(v)
  r_eye = set(R_EYE_UPPER) | set(R_EYE_LOWER)
  l_eye = {int(mirror[i]) for i in r_eye}
  r_brow = set(R_BROW_UPPER) | set(R_BROW_LOWER)
  l_brow = {int(mirror[i]) for i in r_brow}
  # Nose: a tapered band around the midline from the nasion down to the nostrils, in front of the cheeks.
  y_top, y_bot = v[NOSE_BRIDGE, 1], v[NOSE_BOTTOM, 1] - 0.25
  t = np.clip((v[:, 1] - y_bot) / (y_top - y_bot), 0, 1)
  half_w = (1 - t) * (abs(v[NOSE_R_ALA, 0]) + 0.35) + t * 0.9
  nose = (v[:, 1] <= y_top) & (v[:, 1] >= y_bot) & (np.abs(v[:, 0]) <= half_w) & ~lips
  labels = np.full(len(tri), SKIN, np.int32)
  for f, (a, b, c) in enumerate(tri):
    s = {int(a), int(b), int(c)}
    if s <= inner:
      labels[f] = MOUTH
    elif s <= r_eye:
      labels[f] = R_EYE
    elif s <= l_eye:
      labels[f] = L_EYE
    elif s <= r_brow:
      labels[f] = R_BROW
    elif s <= l_brow:
      labels[f] = L_BROW
    elif all(lips[list(s)]):
      n_low = sum(bool(lower_lip[i]) for i in s)
      n_up = sum(bool(upper_lip[i]) for i in s)
      labels[f] = LOWER_LIP if n_low > n_up else UPPER_LIP
    elif sum(bool(nose[i]) for i in s) >= 2:
      labels[f] = NOSE
  return {
      "tri_labels": labels, "lips": lips, "upper_lip": upper_lip, "lower_lip": lower_lip, "nose": nose,
      "mirror": mirror, "r_eye": np.array(sorted(r_eye)), "l_eye": np.array(sorted(l_eye)),
      "r_brow": np.array(sorted(r_brow)), "l_brow": np.array(sorted(l_brow)),
  }


def vertex_faces(n_verts, tri, max_faces=None):
  """[V, K] indices of the faces around each vertex, padded with F (a zero-normal dummy face, as BFM's
  point_buf does with its extra face); K = the largest valence unless given."""
  counts = np.bincount(tri.reshape(-1), minlength=n_verts)
  k = int(counts.max()) if max_faces is None else max_faces
  out = np.full((n_verts, k), len(tri), np.int32)
  fill = np.zeros(n_verts, np.int32)
  for f, corners in enumerate(tri):
    for vtx in corners:
      if fill[vtx] < k:
        out[vtx, fill[vtx]] = f
        fill[vtx] += 1
  return out


