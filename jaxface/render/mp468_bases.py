"""Procedural bases of the `mp468` morphable model: identity shape, named expressions, albedo.

All are displacement (or colour) fields on the 468 base vertices, in the mesh's centimetres, built from
smooth radial bumps around anatomical landmarks. Scaled so that unit-variance identity/albedo coefficients
give plausible faces (named identity components move their region by 1.5–5 mm per unit), and expression
coefficient 1 is the full expression (jaw open ≈ 15°, a broad smile, a closed eye).
Named components come first and do not depend on `seed`; the rest are seeded random smooth fields
(symmetrised for identity components 0..n_sym) so that the span has more than the named directions.
"""

import numpy as np

from jaxface.render import face_model as fm
from jaxface.render import mp468 as m

EXPRESSIONS = ("jaw_open", "smile_l", "smile_r", "frown_l", "frown_r", "brow_raise_l", "brow_raise_r",
               "brow_frown", "eye_close_l", "eye_close_r", "squint", "pucker", "cheek_puff", "mouth_stretch",
               "mouth_left", "mouth_right", "upper_lip_raise", "lower_lip_down", "sneer", "jaw_forward")
IDENTITY_NAMED = ("face_width", "face_height", "face_depth", "jaw_width", "chin_length", "chin_protrusion",
                  "forehead_height", "forehead_slope", "brow_ridge", "eye_spacing", "eye_size", "eye_height",
                  "eye_depth", "nose_length", "nose_width", "nose_projection", "nose_bridge", "mouth_width",
                  "upper_lip_thickness", "lower_lip_thickness", "philtrum_length", "cheekbones",
                  "cheek_fullness", "temple_width", "face_roundness", "jaw_angle", "lip_protrusion",
                  "nostril_flare", "canthal_tilt", "lower_face_forward")
N_ID_SYMMETRIC = 40  # identity components 0..39 are mirror-symmetric, the rest asymmetric
N_TEX_MAX = 64
N_ID_MAX = 64


def _bump(v, centre, radius):
  return np.exp(-((v - np.asarray(centre)) ** 2).sum(-1) / (2.0 * radius ** 2))


def _sym_bump(v, centre, radius):
  c = np.asarray(centre, np.float64)
  return _bump(v, c, radius) + _bump(v, c * [-1, 1, 1], radius)


def _smoothstep(e0, e1, x):
  t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
  return t * t * (3 - 2 * t)


def vertex_normals(v, tri):
  fn = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
  n = np.zeros_like(v)
  for k in range(3):
    np.add.at(n, tri[:, k], fn)
  n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-12
  # The canonical mesh faces +z; orient normals so the nose tip's points outwards whatever the winding.
  return n if n[m.NOSE_TIP, 2] > 0 else -n


def _landmarks(v, reg):
  r_eye = v[list(m.R_EYE_UPPER) + list(m.R_EYE_LOWER)].mean(0)
  mouth = v[list(m.LIPS_UPPER_INNER)].mean(0)
  return {
      "r_eye": r_eye, "mouth": mouth, "nose_tip": v[m.NOSE_TIP], "chin": v[m.CHIN],
      "r_brow": v[list(m.R_BROW_UPPER)].mean(0), "r_cheekbone": np.array([-5.2, 0.8, 3.0]),
      "r_cheek": np.array([-4.6, -3.0, 3.2]), "r_temple": np.array([-6.6, 4.6, 0.8]),
      "r_jaw": v[172], "r_ala": v[m.NOSE_R_ALA], "nose_base": v[m.NOSE_BOTTOM], "bridge": v[197],
      "r_mouth_corner": v[61],
  }


def _normalise(d):
  return d / (np.linalg.norm(d, axis=-1).max() + 1e-12)


def _identity_named(v, n, reg):
  L = _landmarks(v, reg)
  x, y, z = v[:, 0], v[:, 1], v[:, 2]
  sx = np.sign(x)
  zero = np.zeros_like(x)
  vec = lambda a, b, c: np.stack([a + zero, b + zero, c + zero], -1)
  eye_w = _sym_bump(v, L["r_eye"], 1.5)
  lip_up = reg["upper_lip"].astype(float)
  lip_low = reg["lower_lip"].astype(float)
  eye_c = L["r_eye"] * np.stack([sx, np.ones_like(x), np.ones_like(x)], -1)
  lower = _smoothstep(-2.0, -7.0, y)
  fields = [
      (vec(x, 0, 0), 0.45), (vec(0, y, 0), 0.45), (vec(0, 0, z - 2.0), 0.35),
      (vec(x * lower, 0, 0), 0.4), (vec(0, -_smoothstep(-5.5, -9.4, y), 0), 0.35),
      (vec(0, 0, _bump(v, L["chin"], 2.0)), 0.3), (vec(0, _smoothstep(4.5, 8.3, y), 0), 0.35),
      (vec(0, 0, -np.clip(y - 4.0, 0, None)), 0.3), (vec(0, 0, _sym_bump(v, L["r_brow"], 1.3)), 0.25),
      (vec(sx * eye_w, 0, 0), 0.22), ((v - eye_c) * np.array([1, 1, 0]) * _sym_bump(v, L["r_eye"], 1.2)[:, None], 0.18),
      (vec(0, eye_w, 0), 0.2), (vec(0, 0, -_sym_bump(v, L["r_eye"], 1.2)), 0.2),
      (vec(0, -_bump(v, L["nose_tip"], 1.6), 0), 0.3), (vec(x * _bump(v, L["nose_base"], 1.4), 0, 0), 0.2),
      (vec(0, 0, _bump(v, L["nose_tip"], 1.6)), 0.35), (vec(0, 0, _bump(v * [2.5, 0.6, 1], L["bridge"] * [2.5, 0.6, 1], 1.2)), 0.2),
      (vec(x * _bump(v, L["mouth"], 2.0), 0, 0), 0.25), (vec(0, lip_up * _bump(v, L["mouth"], 2.2), 0), 0.15),
      (vec(0, -lip_low * _bump(v, L["mouth"], 2.2), 0), 0.15), (vec(0, -_bump(v, L["mouth"], 2.2), 0), 0.25),
      (None, 0.3), (None, 0.35), (vec(sx * _sym_bump(v, L["r_temple"], 2.0), 0, 0), 0.25),
      (vec(x * (1 - (y / 9.4) ** 2).clip(0), 0, 0), 0.3), (None, 0.3),
      (vec(0, 0, _bump(v, L["mouth"], 1.8)), 0.25), (vec(sx * _sym_bump(v, L["r_ala"], 0.8), 0, 0), 0.15),
      (vec(0, (np.abs(x) - 3.6) * eye_w, 0), 0.15), (vec(0, 0, -y * 0.1), 0.3),
  ]
  normals = vertex_normals(v, reg["_tri"])
  normal_bumps = {21: _sym_bump(v, L["r_cheekbone"], 1.8), 22: _sym_bump(v, L["r_cheek"], 2.2),
                  25: _sym_bump(v, L["r_jaw"], 1.8)}
  out = []
  for k, (d, mm) in enumerate(fields[:n]):
    if d is None:
      d = normals * normal_bumps[k][:, None]
    out.append(_normalise(d) * mm)
  return out


def _random_fields(v, n, rng, symmetric, radius=(1.8, 3.5), amp=0.2):
  out = []
  for _ in range(n):
    d = np.zeros_like(v)
    for _ in range(3):
      c = v[rng.integers(len(v))]
      r = rng.uniform(*radius)
      direction = rng.normal(size=3)
      if symmetric:
        w1, w2 = _bump(v, c, r), _bump(v, c * [-1, 1, 1], r)
        d += w1[:, None] * direction + w2[:, None] * direction * [-1, 1, 1]
      else:
        d += _bump(v, c, r)[:, None] * direction
    out.append(_normalise(d) * amp)
  return out


def identity_basis(v, tri, reg, n_id, seed=0):
  """[468, 3, n_id] identity displacement basis (cm per unit coefficient); components 0..39 symmetric."""
  if n_id > N_ID_MAX:
    raise m.ConfigError(f"mp468 supports at most {N_ID_MAX} identity components, got {n_id}")
  reg = dict(reg, _tri=tri)
  named = _identity_named(v, min(n_id, len(IDENTITY_NAMED)), reg)
  rng = np.random.default_rng([seed, 1])
  n_sym = max(0, min(n_id, N_ID_SYMMETRIC) - len(named))
  comps = named + _random_fields(v, n_sym, rng, True)
  comps += _random_fields(v, n_id - len(comps), rng, False, amp=0.12)
  return np.stack(comps, -1)


def _lid_target(v, upper, lower):
  """For each upper-lid vertex, the point of the lower lid below it (linear in x along the lower contour)."""
  lx, ly = v[list(lower), 0], v[list(lower), 1]
  order = np.argsort(lx)
  out = []
  for i in upper:
    out.append([v[i, 0], np.interp(v[i, 0], lx[order], ly[order]), v[i, 2]])
  return np.array(out)


def expression_basis(v, tri, reg):
  """[468, 3, 20] named blendshapes (EXPRESSIONS order), cm at coefficient 1."""
  L = _landmarks(v, reg)
  x, y, z = v[:, 0], v[:, 1], v[:, 2]
  mir = reg["mirror"]
  low = reg["lower_lip"].astype(float)
  up = reg["upper_lip"].astype(float)
  # Jaw open: rotate the lower face about a hinge near the ears; weight 1 on the lower lip and chin.
  jaw_w = np.maximum(low, _smoothstep(L["mouth"][1] - 0.2, L["mouth"][1] - 2.5, y))
  jaw_w *= np.where(up > 0, 0.0, 1.0) * (1 - _smoothstep(6.0, 7.8, np.abs(x)) * 0.6)
  hinge = np.array([0.0, 0.5, -3.0])
  ang = np.deg2rad(15.0)
  rel = v - hinge
  rot = np.stack([rel[:, 0], rel[:, 1] * np.cos(ang) + rel[:, 2] * np.sin(ang),
                  -rel[:, 1] * np.sin(ang) + rel[:, 2] * np.cos(ang)], -1)
  jaw = (rot - rel) * jaw_w[:, None]

  def side(field):  # mirror a right-side field onto the left side (x -> -x)
    return field[mir] * [-1, 1, 1]

  corner_r = _bump(v, L["r_mouth_corner"], 1.6)
  cheek_r = _bump(v, L["r_cheek"] + [0.3, 1.0, 0.2], 1.6)
  smile_r = corner_r[:, None] * [-0.5, 0.55, -0.25] + cheek_r[:, None] * [-0.1, 0.3, 0.15]
  frown_r = corner_r[:, None] * [0.0, -0.45, 0.0] + low[:, None] * corner_r[:, None] * [0, -0.1, 0]
  brow_r = (_bump(v, L["r_brow"], 1.6) + 0.4 * _bump(v, L["r_brow"] + [0, 1.8, -0.3], 2.0))[:, None] * [0, 0.5, 0]
  inner_brows = _sym_bump(v, L["r_brow"] + [1.6, 0, 0.2], 1.2)  # brows pulled down and together
  frown_b = inner_brows[:, None] * np.stack([-0.25 * np.sign(x), -0.3 + 0 * x, 0.05 + 0 * x], -1)
  eye_r = np.zeros_like(v)
  tgt = _lid_target(v, m.R_EYE_UPPER[1:-1], m.R_EYE_LOWER)
  eye_r[list(m.R_EYE_UPPER[1:-1])] = tgt - v[list(m.R_EYE_UPPER[1:-1])]
  for ring, w in ((m.R_EYE_UPPER1, 0.55), (m.R_EYE_UPPER2, 0.2)):
    t = _lid_target(v, ring, m.R_EYE_LOWER)
    eye_r[list(ring)] = (t - v[list(ring)]) * w * [0, 1, 0]
  eye_r[list(m.R_EYE_LOWER1)] += [0, 0.06, 0]
  squint = 0.35 * (eye_r + side(eye_r)) + (_sym_bump(v, L["r_cheekbone"], 1.5))[:, None] * [0, 0.15, 0.05]
  mouth_w = _bump(v, L["mouth"], 2.0)
  lips = np.maximum(up, low) + 0.5 * mouth_w
  pucker = (np.stack([-0.35 * x / 2.5, 0 * x, 0.45 + 0 * x], -1)) * lips[:, None] * mouth_w[:, None]
  puff = vertex_normals(v, tri) * (_sym_bump(v, L["r_cheek"] + [0.2, 0.3, 0], 1.8))[:, None] * 0.45
  stretch = np.stack([0.45 * np.tanh(x / 1.5), -0.05 * np.sign(y - L["mouth"][1]), 0 * x], -1) * mouth_w[:, None]
  shift = mouth_w[:, None] * [0.5, 0, 0]
  ulr = (up + 0.4 * _bump(v, L["nose_base"] + [0, -0.5, 0], 1.2))[:, None] * mouth_w[:, None] * [0, 0.35, 0]
  lld = low[:, None] * mouth_w[:, None] * [0, -0.35, 0.05]
  sneer = (_sym_bump(v, L["r_ala"] + [0, 0.6, 0], 0.9))[:, None] * [0, 0.3, 0] + 0.4 * ulr
  jaw_fwd = jaw_w[:, None] * [0, 0, 0.35]
  shapes = [jaw, side(smile_r), smile_r, side(frown_r), frown_r, side(brow_r), brow_r, frown_b, side(eye_r),
            eye_r, squint, pucker, puff, stretch, shift, -shift, ulr, lld, sneer, jaw_fwd]
  return np.stack(shapes, -1)


def albedo(v, reg, n_tex, seed=0):
  """(mean_albedo [468,3], albedo_basis [468,3,n_tex]) in linear RGB 0..1."""
  if n_tex > N_TEX_MAX:
    raise m.ConfigError(f"mp468 supports at most {N_TEX_MAX} albedo components, got {n_tex}")
  L = _landmarks(v, reg)
  n = len(v)
  lips = reg["lips"].astype(float)
  brow = np.zeros(n)
  brow[list(reg["r_brow"]) + list(reg["l_brow"])] = 1.0
  brow_soft = np.maximum(brow, 0.5 * _sym_bump(v, L["r_brow"], 0.9))
  skin = np.clip(1.0 - lips - brow_soft, 0, 1)
  base_skin = np.array([0.70, 0.50, 0.40])
  mean = skin[:, None] * base_skin + lips[:, None] * [0.62, 0.32, 0.32] + brow_soft[:, None] * [0.30, 0.21, 0.16]
  mean = mean / np.maximum(skin + lips + brow_soft, 1e-6)[:, None]
  cheeks = _sym_bump(v, L["r_cheek"] + [0, 1.0, 0], 1.6)
  beard = _smoothstep(-1.5, -4.0, v[:, 1]) * (1 - lips) * (1 - 0.7 * _bump(v, L["nose_tip"], 1.4))
  under_eye = _sym_bump(v, L["r_eye"] + [0, -1.0, 0], 0.8)
  lids = _sym_bump(v, L["r_eye"] + [0, 0.5, 0], 0.7)
  ones = np.ones(n)
  named = [
      ones[:, None] * [0.12, 0.10, 0.08] * skin[:, None],  # lightness
      skin[:, None] * [0.04, -0.01, -0.02], skin[:, None] * [0.02, 0.015, -0.03],  # redness, yellowness
      lips[:, None] * [0.06, -0.01, 0.0], lips[:, None] * [-0.06, -0.05, -0.04], lips[:, None] * [0.02, -0.02, 0.03],
      brow_soft[:, None] * [-0.07, -0.06, -0.05], brow_soft[:, None] * [0.04, 0.02, -0.01],
      cheeks[:, None] * [0.04, -0.015, -0.01], _bump(v, L["nose_tip"], 1.2)[:, None] * [0.035, -0.01, -0.01],
      beard[:, None] * [-0.06, -0.05, -0.035], under_eye[:, None] * [-0.035, -0.035, -0.02],
      _smoothstep(3.0, 8.0, v[:, 1])[:, None] * [0.02, 0.02, 0.01], lids[:, None] * [-0.03, -0.03, -0.015],
      (v[:, 1] / 9.4)[:, None] * [0.02, 0.015, 0.01], (np.abs(v[:, 0]) / 7.7)[:, None] * [-0.02, -0.02, -0.015],
  ]
  rng = np.random.default_rng([seed, 2])
  comps = named[:n_tex]
  while len(comps) < n_tex:
    c, r = v[rng.integers(n)], rng.uniform(1.5, 3.0)
    w = _bump(v, c, r) + (_bump(v, c * [-1, 1, 1], r) if rng.uniform() < 0.7 else 0)
    comps.append(w[:, None] * rng.normal(0, 0.012, size=3))
  return mean, np.stack(comps, -1)


def build_face_model_arrays(level=1, n_id=48, n_exp=20, n_tex=48, seed=0):
  """All FaceModel fields as numpy arrays (float32 geometry in decimetres, albedo in 0..1)."""
  if n_id < 1 or n_exp < 1 or n_tex < 1:
    raise m.ConfigError(f"mp468 needs n_id, n_exp, n_tex >= 1, got {n_id}, {n_exp}, {n_tex}")
  if n_exp > len(EXPRESSIONS):
    raise m.ConfigError(f"mp468 has {len(EXPRESSIONS)} named expressions; n_exp={n_exp} is too many")
  mesh = m.load_mesh()
  reg = m.regions()
  v0 = mesh["vertices"].astype(np.float64)
  id0 = identity_basis(v0, mesh["triangles"], reg, n_id, seed)  # [468,3,n_id] cm
  exp0 = expression_basis(v0, mesh["triangles"], reg)[..., :n_exp]  # [468,3,n_exp] cm
  alb0, albb0 = albedo(v0, reg, n_tex, seed)  # [468,3], [468,3,n_tex]
  S, tri, parent = m.subdivision(level)

  def lift(a):  # apply the subdivision matrix to the vertex axis of [468, ...]
    flat = a.reshape(468, -1)
    return np.asarray(S @ flat).reshape((S.shape[0],) + a.shape[1:])

  mean = lift(v0)
  centroid = mean.mean(0)
  uv = lift(mesh["uv"].astype(np.float64))
  tri_labels = reg["tri_labels"][parent]
  skin_tri = tri_labels == m.SKIN
  skin_mask = np.zeros(S.shape[0], np.float32)
  skin_mask[np.unique(tri[skin_tri])] = 1.0
  skin_mask[np.unique(tri[~skin_tri])] = 0.0
  f32 = lambda a: np.asarray(a, np.float32)
  return {
      "mean_shape": f32((mean - centroid) * m.CM_TO_MODEL),
      "id_basis": f32(lift(id0) * m.CM_TO_MODEL),
      "exp_basis": f32(lift(exp0) * m.CM_TO_MODEL),
      "mean_albedo": f32(np.clip(lift(alb0), 0, 1)),
      "albedo_basis": f32(lift(albb0)),
      "tri": tri.astype(np.int32),
      "vertex_faces": m.vertex_faces(S.shape[0], tri),
      "landmarks68": m.LANDMARKS68.copy(),
      "landmarks468": np.arange(468, dtype=np.int32),
      "skin_mask": skin_mask,
      "face_mask": np.ones(S.shape[0], np.float32),
      "tri_labels": tri_labels.astype(np.int32),
      "uv": f32(uv),
      "canonical": f32(mean * m.CM_TO_MODEL),  # un-centred mean shape: the coordinates procedural textures use
      "centroid": f32(centroid * m.CM_TO_MODEL),
  }


def build_face_model(level=1, n_id=48, n_exp=20, n_tex=48, seed=0):
  """The `mp468` FaceModel (what `face_model.load_face_model("mp468", **kw)` returns).

  level: Loop subdivision level 0/1/2 (468/1,833/7,257 vertices). n_id/n_exp/n_tex: basis sizes (at most
  64 identity, 20 named expressions (mp468_bases.EXPRESSIONS), 64 albedo). seed: the random part of the
  procedural bases (the named components do not depend on it). The render sub-mesh leaves out the
  mouth-interior triangles (an open mouth is a hole, as in the BFM front model).
  """
  a = build_face_model_arrays(level, n_id, n_exp, n_tex, seed)
  return fm.make_face_model(
      name=f"mp468_l{level}", mean_shape=a["mean_shape"], id_basis=a["id_basis"], exp_basis=a["exp_basis"],
      mean_albedo=a["mean_albedo"], albedo_basis=a["albedo_basis"], tri=a["tri"], landmarks68=a["landmarks68"],
      vertex_faces=a["vertex_faces"], skin_mask=a["skin_mask"], face_mask=a["face_mask"],
      render_tri=a["tri"][a["tri_labels"] != m.MOUTH], recenter=False)
