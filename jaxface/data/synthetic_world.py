"""Geometry of the synthetic world around the `mp468` face: head, neck, ears, hair, glasses.

One static mesh (`build_world(level)`, numpy, cached) = the face mesh followed by procedural parts, each
triangle carrying a segmentation label. Per sample, `world_vertices` (JAX) moves the parts with the
identity's face (scale, eye positions) and hides what the sample does not have (hair of other styles,
glasses) by collapsing those triangles onto one vertex (zero area: the rasterizer skips them), so the
topology, and therefore the jitted renderer, never changes. Coordinates: the face model's (decimetres,
centred on the mean shape's centroid, y up, face towards +z).
"""

import functools

import jax.numpy as jnp
import numpy as np

from jaxface.render import mp468, mp468_bases

# Segmentation classes: a superset of SofGAN's (l/r split where SofGAN splits), see `to_sofgan17`.
CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "l_nose", "r_nose", "mouth", "u_lip",
           "l_lip", "l_ear", "r_ear", "glasses", "neck", "hair")
C = {n: i for i, n in enumerate(CLASSES)}
# SofGAN's 17 classes: 0 bg, 1 skin, 2 brow, 3 eye, 4 r_nose, 5 l_nose, 6 mouth, 7 u_lip, 8 l_lip, 9 ear,
# 10 ear_r(ing), 11 eye_g, 12 neck, 13 neck_l(ace), 14 cloth, 15 hair, 16 hat.
TO_SOFGAN17 = np.array([0, 1, 2, 2, 3, 3, 5, 4, 6, 7, 8, 9, 9, 11, 12, 15], np.int32)
PART = {"face": 0, "head": 1, "neck": 2, "ears": 3, "hair": 4, "curtain": 5, "bun": 6, "glasses": 7,
        "lens": 8}
# Hair styles (synthetic_factors.HAIR_STYLES): hairline height (dm, above the centroid) at the front, the
# sides and the back, and whether the long curtain / the bun are shown.
STYLE_TABLE = np.array([
    # front, side, back, curtain, bun
    [0.62, 0.35, -0.05, 0, 0],   # buzz (thin)
    [0.55, 0.20, -0.30, 0, 0],   # short
    [0.50, -0.05, -0.45, 0, 0],  # medium (covers the ears)
    [0.52, 0.05, -0.45, 1, 0],   # long
    [0.55, 0.25, -0.20, 0, 1],   # bun
    [0.30, 0.10, -0.35, 0, 0],   # bangs
], np.float32)
N_RIM = 28


def ellipsoid(center, radii, n_lat, n_lon, lat_range=(0.0, np.pi)):
  """UV-sphere ellipsoid [poles at ±y], outward counter-clockwise triangles."""
  lat = np.linspace(*lat_range, n_lat + 1)
  lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
  th, ph = np.meshgrid(lat, lon, indexing="ij")
  unit = np.stack([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)], -1).reshape(-1, 3)
  verts = np.asarray(center) + unit * np.asarray(radii)
  tri = []
  for i in range(n_lat):
    for j in range(n_lon):
      a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
      c, d = a + n_lon, b + n_lon
      tri += [(a, c, b), (b, c, d)]
  return verts, np.asarray(tri, np.int32), unit


def _drop_vertices(verts, tri, keep):
  tri = tri[keep[tri].all(1)]
  new = -np.ones(len(verts), np.int64)
  used = np.unique(tri)
  new[used] = np.arange(len(used))
  return verts[used], new[tri].astype(np.int32), used


def _point_in_polygon(p, poly):
  x, y = p[:, 0:1], p[:, 1:2]
  x0, y0 = poly[:, 0][None], poly[:, 1][None]
  x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
  cross = ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / (y1 - y0 + 1e-12) + x0)
  return cross.sum(1) % 2 == 1


@functools.lru_cache(maxsize=3)
def build_world(level=1):
  """The static world mesh for a subdivision level (dict of numpy arrays)."""
  fm = mp468_bases.build_face_model_arrays(level=level)
  face_v = fm["mean_shape"]
  n_face = len(face_v)
  face_labels = np.array([C["skin"], C["r_brow"], C["l_brow"], C["r_eye"], C["l_eye"], -1, C["u_lip"],
                          C["l_lip"], C["mouth"]], np.int32)[fm["tri_labels"]]
  nose = fm["tri_labels"] == mp468.NOSE
  cx = face_v[fm["tri"]].mean(1)[:, 0]
  face_labels = np.where(nose, np.where(cx > 0, C["l_nose"], C["r_nose"]), face_labels)
  oval = face_v[list(mp468.FACE_OVAL)]
  parts = []  # (verts, tri, labels, part id, base normals/local coords)

  # Head: an ellipsoid with the face region cut out (the face mesh fills the hole; the cut is a bit smaller
  # than the face oval so the shell continues under the face's rim and no gap opens).
  hv, ht, hu = ellipsoid((0, 0.22, -0.36), (0.76, 0.98, 0.98), 24, 40)
  inner = oval[:, :2] * 0.93 + oval[:, :2].mean(0) * 0.07
  keep = ~(_point_in_polygon(hv, inner) & (hv[:, 2] > -0.3))
  hv, ht, used = _drop_vertices(hv, ht, keep)
  parts.append((hv, ht, np.full(len(ht), C["skin"]), PART["head"], hu[used]))
  # Neck: an open elliptic cylinder below the head.
  y = np.linspace(-0.35, -2.6, 9)
  ang = np.linspace(0, 2 * np.pi, 32, endpoint=False)
  unit = np.stack([np.sin(ang), np.zeros_like(ang), np.cos(ang)], -1)
  nv = np.concatenate([unit * [0.43, 0, 0.40] + [0, yy, -0.40] for yy in y])
  nt = []
  for i in range(len(y) - 1):
    for j in range(32):
      a, b = i * 32 + j, i * 32 + (j + 1) % 32
      nt += [(a, b, a + 32), (b, b + 32, a + 32)]
  parts.append((nv, np.asarray(nt, np.int32), np.full(len(nt), C["neck"]), PART["neck"], np.tile(unit, (len(y), 1))))
  # Ears: flattened ellipsoids at the sides of the head.
  for sx, label in ((-1, C["r_ear"]), (1, C["l_ear"])):
    ev, et, eu = ellipsoid((0, 0, 0), (0.05, 0.27, 0.17), 8, 14)
    a = np.deg2rad(25.0) * sx  # ears flare out backwards
    rot = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    ev = ev @ rot.T + (sx * 0.8, 0.08, -0.40)
    parts.append((ev, et, np.full(len(et), label), PART["ears"], eu @ rot.T))
  # Hair: a shell around the head (its triangles shown above the style's hairline), a curtain for long
  # hair and a bun.
  sv, st, su = ellipsoid((0, 0.22, -0.36), (0.80, 1.02, 1.02), 28, 48)
  parts.append((sv, st, np.full(len(st), C["hair"]), PART["hair"], su))
  lon = np.linspace(np.deg2rad(50), np.deg2rad(310), 30)
  yc = np.linspace(0.35, -1.7, 10)
  cu = np.stack([np.sin(lon), np.zeros_like(lon), np.cos(lon)], -1)
  cv = np.concatenate([cu * [0.86 + 0.04 * (0.35 - yy), 0, 0.95] + [0, yy, -0.4] for yy in yc])
  ct = []
  for i in range(len(yc) - 1):
    for j in range(len(lon) - 1):
      a, b = i * len(lon) + j, i * len(lon) + j + 1
      ct += [(a, b, a + len(lon)), (b, b + len(lon), a + len(lon))]
  parts.append((cv, np.asarray(ct, np.int32), np.full(len(ct), C["hair"]), PART["curtain"], np.tile(cu, (len(yc), 1))))
  bv, bt, bu = ellipsoid((0, 0.95, -0.85), (0.3, 0.28, 0.3), 10, 16)
  parts.append((bv, bt, np.full(len(bt), C["hair"]), PART["bun"], bu))
  # Glasses: per eye a rim (N_RIM inner + N_RIM outer vertices) and a lens fan (centre + N_RIM); then two
  # arms (4 vertices each) and a bridge (4). Positions are computed per sample (`_glasses_vertices`).
  gt, gl, gp = [], [], []
  base = 0
  for _ in range(2):
    for k in range(N_RIM):
      a, b = base + k, base + (k + 1) % N_RIM
      gt += [(a, b, a + N_RIM), (b, b + N_RIM, a + N_RIM)]
      gp += [PART["glasses"]] * 2
    base += 2 * N_RIM
  for e in range(2):
    centre = base + e * (N_RIM + 1)
    for k in range(N_RIM):
      gt.append((centre, centre + 1 + k, centre + 1 + (k + 1) % N_RIM))
      gp.append(PART["lens"])
  base += 2 * (N_RIM + 1)
  for k in range(3):  # two arms and the bridge: quads
    a = base + 4 * k
    gt += [(a, a + 1, a + 2), (a + 1, a + 3, a + 2)]
    gp += [PART["glasses"]] * 2
  n_glasses_v = base + 12
  gv = np.zeros((n_glasses_v, 3))
  parts.append((gv, np.asarray(gt, np.int32), np.full(len(gt), C["glasses"]), -1, np.zeros_like(gv)))

  verts, tris, labels, part_tri, part_v, local = [face_v], [fm["tri"]], [face_labels], [np.zeros(len(fm["tri"]))], [
      np.zeros(n_face)], [fm["canonical"]]
  offset = n_face
  for v, t, lab, pid, u in parts:
    verts.append(v - (fm["centroid"] if pid != -1 else 0))  # templates are in canonical coordinates
    tris.append(t + offset)
    labels.append(lab)
    part_tri.append(np.asarray(gp) if pid == -1 else np.full(len(t), pid))
    part_v.append(np.full(len(v), PART["glasses"] if pid == -1 else pid))
    local.append(u)
    offset += len(v)
  verts = np.concatenate(verts).astype(np.float32)
  normals0 = np.concatenate([np.zeros((n_face, 3))] + [p[4] for p in parts]).astype(np.float32)
  return {
      "face": fm, "n_face": n_face, "verts": verts, "tri": np.concatenate(tris).astype(np.int32),
      "labels": np.concatenate(labels).astype(np.int32), "part_tri": np.concatenate(part_tri).astype(np.int32),
      "part_v": np.concatenate(part_v).astype(np.int32), "local": np.concatenate(local).astype(np.float32),
      "unit": normals0, "glasses_start": offset - n_glasses_v, "mean_width": float(np.ptp(face_v[:, 0])),
      "mean_height": float(np.ptp(face_v[:, 1])),
      "eye_r": face_v[list(mp468.R_EYE_UPPER) + list(mp468.R_EYE_LOWER)].mean(0),
  }


def _glasses_vertices(f, eye_r, eye_l, bridge_z, ear_y):
  """Glasses vertices [N,3] from the sample's eye centres and glasses parameters (JAX)."""
  th = jnp.linspace(0, 2 * jnp.pi, N_RIM, endpoint=False)
  p = 2.0 + 4.0 * f["glasses_shape"]  # superellipse exponent: 2 = round .. 6 = rectangular
  c, s = jnp.cos(th), jnp.sin(th)
  rad = (jnp.abs(c) ** p + jnp.abs(s) ** p) ** (-1.0 / p)
  size = f["glasses_size"]
  rx, ry, width = 0.24 * size, 0.17 * size, 0.025
  z = bridge_z + 0.03
  rims, lenses, outer = [], [], []  # outer: the rim point on the temple side of the right eye
  for centre in (eye_r, eye_l):
    ring = jnp.stack([c * rad * rx, s * rad * ry, jnp.zeros_like(c)], -1)
    cz = jnp.array([centre[0], centre[1] + 0.01, 0.0]) + jnp.array([0.0, 0.0, 1.0]) * z
    bend = jnp.stack([jnp.zeros_like(c), jnp.zeros_like(c), -0.15 * (ring[:, 0] / rx) ** 2 * rx], -1)
    rims += [cz + ring + bend, cz + ring * (1 + width / rx) + bend]
    lenses += [cz[None], cz + ring + bend]
    outer.append(cz + ring[0] * (1 + width / rx) + bend[0])
  o_r = outer[0]
  dy = jnp.array([0.0, 0.012, 0.0])
  ear = lambda x: jnp.array([x, ear_y + 0.05, -0.45])
  o_rr = jnp.stack([eye_r[0] - rx - width, o_r[1], o_r[2]])
  o_ll = jnp.stack([eye_l[0] + rx + width, o_r[1], o_r[2]])
  arm_r = jnp.stack([o_rr + dy, o_rr - dy, ear(-0.8) + dy, ear(-0.8) - dy])
  arm_l = jnp.stack([o_ll - dy, o_ll + dy, ear(0.8) - dy, ear(0.8) + dy])
  b_r = jnp.stack([eye_r[0] + rx, eye_r[1] + 0.05, z])
  b_l = jnp.stack([eye_l[0] - rx, eye_l[1] + 0.05, z])
  bridge = jnp.stack([b_r + dy, b_r - dy, b_l + dy, b_l - dy])
  return jnp.concatenate(rims + lenses + [arm_r, arm_l, bridge], 0)


def world_vertices(world, f, face_verts):
  """Per-sample world vertices [Vw,3] and triangles [Fw,3] with hidden parts collapsed (JAX)."""
  n_face = world["n_face"]
  fv = face_verts
  sx = (fv[:, 0].max() - fv[:, 0].min()) / world["mean_width"]
  sy = (fv[:, 1].max() - fv[:, 1].min()) / world["mean_height"]
  scale = jnp.stack([sx, sy, 0.5 * (sx + sy)])
  rest = jnp.asarray(world["verts"][n_face:]) * scale
  part_v = world["part_v"][n_face:]
  unit = jnp.asarray(world["unit"][n_face:])
  is_hair = jnp.asarray(np.isin(part_v, [PART["hair"], PART["curtain"], PART["bun"]]))
  rest = rest + jnp.where(is_hair[:, None], unit * f["hair_volume"], 0.0)
  eye_idx_r = list(mp468.R_EYE_UPPER) + list(mp468.R_EYE_LOWER)
  mirror = mp468.regions()["mirror"]
  eye_r = fv[np.array(eye_idx_r)].mean(0)
  eye_l = fv[mirror[np.array(eye_idx_r)]].mean(0)
  g = _glasses_vertices(f, eye_r, eye_l, fv[mp468.NOSE_BRIDGE, 2], eye_r[1] - 0.2)
  gs = world["glasses_start"]
  verts = jnp.concatenate([fv, rest[:gs - n_face], g], 0)
  # Visibility of optional parts.
  tri = jnp.asarray(world["tri"])
  part_t = world["part_tri"]
  style = jnp.asarray(STYLE_TABLE)[f["hair_style"]]
  local = jnp.asarray(world["local"])
  # Hairline on the shell: front/side/back heights blended by the azimuth around the head.
  az = jnp.arctan2(local[:, 0], local[:, 2])  # 0 = front, ±pi = back
  ca = jnp.cos(az)
  line = jnp.where(ca > 0, style[1] + (style[0] - style[1]) * ca, style[1] + (style[2] - style[1]) * -ca)
  line = line + f["hairline"] - world["face"]["centroid"][1]
  shell_y = jnp.asarray(world["verts"][:, 1])
  keep_v = jnp.asarray(world["part_v"] != PART["hair"]) | (shell_y > line)
  keep_t = keep_v[tri].all(1)
  keep_t &= jnp.where(jnp.asarray(part_t == PART["curtain"]), style[3] > 0, True)
  keep_t &= jnp.where(jnp.asarray(part_t == PART["bun"]), style[4] > 0, True)
  keep_t &= jnp.where(jnp.asarray(part_t == PART["glasses"]), f["glasses"] > 0, True)
  keep_t &= jnp.where(jnp.asarray(part_t == PART["lens"]), f["glasses"] == 2, True)
  tri = jnp.where(keep_t[:, None], tri, 0)
  return verts, tri


def to_sofgan17(seg):
  """Our segmentation labels -> SofGAN's 17-class label space."""
  return TO_SOFGAN17[seg]
