"""Rendering one synthetic-world sample: pure JAX, jittable, vmapped over batches by `synthetic.py`.

Pipeline: identity+expression shape (mp468) -> world geometry (`synthetic_world`) -> rotation R = Rz·Ry·Rx
and translation -> perspective camera at (0, 0, 10) dm looking down -z (BFM/DiscoFaceGAN convention,
focal = cfg.focal·R/256 pixels) -> jaxface.render.rasterize -> per-pixel shading: per-vertex albedo,
DiscoFaceGAN's 27-coefficient SH lighting (ambient +0.8), Blinn-Phong specular along the SH light
direction, and the details a 3DMM does not have (iris/pupil/catch-light, teeth, freckles, moles, hair
strands, backgrounds) -> analytic edge antialiasing -> sRGB-like gamma 1/2.2 (albedo and light are linear). Everything procedural is a function of the sample's
factors and of resolution-independent coordinates (model space, NDC), so a sample looks the same at any
resolution.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxface.data import synthetic_world as sw
from jaxface.render import camera as cam_lib
from jaxface.render import lighting, mp468
from jaxface.render import rasterize as rz

CAMERA_Z = 10.0


def camera(focal):
  """The world's camera: jaxface.render.camera's pinhole at (0, 0, 10) dm; focal in pixels at 256²."""
  return cam_lib.perspective(focal, 128.0, 128.0, 256, 256, distance=CAMERA_Z)


def _vertex_normals(verts, tri):
  fn = jnp.cross(verts[tri[:, 1]] - verts[tri[:, 0]], verts[tri[:, 2]] - verts[tri[:, 0]])
  n = jax.ops.segment_sum(jnp.repeat(fn, 3, axis=0), tri.reshape(-1), num_segments=verts.shape[0])
  return n / jnp.maximum(jnp.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def background(f, u, v):
  """Resolution-independent background colour at NDC (u, v) [H,W]."""
  ang, freq, phase, off = f["bg_params"][0], f["bg_params"][1], f["bg_params"][2], f["bg_params"][3]
  along = u * jnp.cos(ang) + v * jnp.sin(ang)
  t_lin = jnp.clip(0.5 + 0.5 * along, 0, 1)
  t_rad = jnp.clip(jnp.sqrt((u - off) ** 2 + (v + off) ** 2) / 1.5, 0, 1)
  t_str = 0.5 + 0.5 * jnp.tanh(3 * jnp.sin(freq * np.pi * along + phase))
  t_blob = jnp.clip(0.5 + 0.25 * (jnp.sin(freq * u + phase) * jnp.sin(0.7 * freq * v - phase)
                                  + jnp.sin(1.3 * freq * (u + v) + 2 * phase)), 0, 1)
  t = jnp.stack([t_lin, t_rad, t_str, t_blob])[f["bg_kind"]]
  return f["bg_rgb"][0] * (1 - t[..., None]) + f["bg_rgb"][1] * t[..., None]


@functools.lru_cache(maxsize=3)
def _statics(level):
  world = sw.build_world(level)
  face = world["face"]
  S, _, _ = mp468.subdivision(level)
  reg = mp468.regions()
  lower = np.asarray(S @ reg["lower_lip"].astype(np.float64)).astype(np.float32)
  upper_lid = np.zeros(468)
  upper_lid[list(mp468.R_EYE_UPPER[1:-1]) + list(reg["mirror"][list(mp468.R_EYE_UPPER[1:-1])])] = 1.0
  lid = np.asarray(S @ upper_lid).astype(np.float32)
  pad = np.zeros(len(world["verts"]) - len(lower), np.float32)
  canon = face["canonical"]
  eye_r = canon[list(mp468.R_EYE_UPPER) + list(mp468.R_EYE_LOWER)].mean(0)
  half_w = 0.5 * abs(canon[33, 0] - canon[133, 0])
  return {"world": world, "aux": np.stack([np.concatenate([lower, pad]), np.concatenate([lid, pad])], -1),
          "eye_r": eye_r, "eye_half_w": half_w, "topology": rz.edge_topology(world["tri"]),
          "face_render": np.isin(np.arange(len(world["tri"])), np.flatnonzero(face["tri_labels"] != mp468.MOUTH)),
          "oval": np.array(mp468.FACE_OVAL)}


def _eye_colour(f, local, st):
  """Sclera, iris (radial streaks, limbal ring), pupil and a catch-light from canonical coordinates."""
  centre = jnp.where(local[..., :1] < 0, st["eye_r"][:2], st["eye_r"][:2] * jnp.array([-1.0, 1.0]))
  q = (local[..., :2] - centre) / st["eye_half_w"] - f["gaze"] * jnp.array([0.45, 0.3])
  r = jnp.linalg.norm(q, axis=-1)
  theta = jnp.arctan2(q[..., 1], q[..., 0])
  iris_r, pupil_r = 0.5, 0.2
  streak = 0.75 + 0.25 * jnp.sin(23 * theta) * jnp.sin(7 * theta + 1.0)
  iris = f["iris_rgb"] * streak[..., None] * (1 - 0.5 * jnp.clip((r - 0.75 * iris_r) / (0.25 * iris_r), 0, 1))[..., None]
  sclera = jnp.array([0.82, 0.78, 0.74]) * (1 - 0.25 * jnp.clip(jnp.abs(local[..., :1] - centre[..., :1]) / st["eye_half_w"], 0, 1))
  col = jnp.where((r < iris_r)[..., None], iris, sclera)
  col = jnp.where((r < pupil_r)[..., None], 0.02, col)
  glint = jnp.linalg.norm(q - jnp.array([-0.12, 0.15]), axis=-1) < 0.09
  return jnp.where(glint[..., None], 1.0, col), glint


def render_one(f, resolution, level=1, focal=800.0):
  """One sample's factors (dict of arrays, unbatched) -> dict of image, seg, masks, landmarks."""
  st = _statics(level)
  world, face = st["world"], st["world"]["face"]
  n_face = world["n_face"]
  hp = jax.lax.Precision.HIGHEST
  fv = (face["mean_shape"] + jnp.einsum("vck,k->vc", face["id_basis"], f["id"], precision=hp)
        + jnp.einsum("vck,k->vc", face["exp_basis"], f["exp"], precision=hp))
  verts, tri = sw.world_vertices(world, f, fv)
  posed = cam_lib.rigid_transform(verts, f["angle"], f["trans"])
  clip = cam_lib.project_clip(camera(focal), posed)
  frags = rz.rasterize(clip, tri, (resolution, resolution), window=4,
                       capacity=max(4096, int(resolution * resolution / 3)))
  normals = _vertex_normals(posed, tri)
  alb_face = jnp.clip(face["mean_albedo"] + jnp.einsum("vck,k->vc", face["albedo_basis"], f["tex"], precision=hp), 0, 1)
  skin = alb_face[st["oval"]].mean(0)
  part_v = jnp.asarray(world["part_v"][n_face:])
  rest = jnp.where((part_v == sw.PART["neck"])[:, None], skin * 0.93, skin)
  rest = jnp.where(jnp.isin(part_v, jnp.array([sw.PART["hair"], sw.PART["curtain"], sw.PART["bun"]]))[:, None],
                   f["hair_rgb"], rest)
  rest = jnp.where((part_v == sw.PART["glasses"])[:, None], f["glasses_rgb"], rest)
  albedo = jnp.concatenate([alb_face, rest], 0)
  attr = jnp.concatenate([albedo, normals, jnp.asarray(world["local"]), jnp.asarray(st["aux"])], -1)
  pix = rz.interpolate(attr, frags, tri)
  covered = frags.tri_id >= 0
  tid = jnp.maximum(frags.tri_id, 0)
  label = jnp.where(covered, jnp.asarray(world["labels"])[tid], 0)
  part = jnp.where(covered, jnp.asarray(world["part_tri"])[tid], -1)
  alb, n, local, aux, lid = pix[..., :3], pix[..., 3:6], pix[..., 6:9], pix[..., 9], pix[..., 10]
  n = n / jnp.maximum(jnp.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
  on_face = part == 0
  # Skin detail: freckles and moles live in canonical face coordinates, so they move with the face.
  def spots(table):
    d2 = ((local[..., None, :2] - table[:, :2] - face["centroid"][:2]) ** 2).sum(-1)
    return jnp.max(table[:, 3] * jnp.exp(-d2 / (2 * table[:, 2] ** 2)), axis=-1)
  freck = jnp.where(on_face & (label == sw.C["skin"]), spots(f["freckles"]), 0.0)
  mole = jnp.where(on_face & (label == sw.C["skin"]), spots(f["moles"]), 0.0)
  alb = alb * (1 - freck[..., None] * jnp.array([0.35, 0.5, 0.6]))
  alb = alb * (1 - mole[..., None] * jnp.array([0.7, 0.78, 0.82]))
  is_eye = (label == sw.C["r_eye"]) | (label == sw.C["l_eye"])
  eye_col, glint = _eye_colour(f, local, st)
  lash = 1 - 0.85 * jnp.clip((lid - 0.55) / 0.3, 0, 1)  # dark lash line along the upper lid
  alb = jnp.where(is_eye[..., None], eye_col * lash[..., None], alb)
  teeth = (aux < 0.3) | (aux > 0.85)
  mouth_col = jnp.where(teeth[..., None], jnp.array([0.78, 0.74, 0.66]), jnp.array([0.22, 0.05, 0.06]))
  alb = jnp.where((label == sw.C["mouth"])[..., None], mouth_col, alb)
  is_hair = label == sw.C["hair"]
  az = jnp.arctan2(local[..., 0], local[..., 2])
  strands = 0.72 + 0.28 * jnp.sin(90 * az + 4 * jnp.sin(9 * local[..., 1])) * jnp.sin(37 * az + 2.0)
  alb = jnp.where(is_hair[..., None], alb * strands[..., None], alb)
  lens = part == sw.PART["lens"]
  alb = jnp.where(lens[..., None], jnp.array([0.03, 0.035, 0.04]), alb)
  shade = lighting.irradiance(n, f["gamma"])
  g = f["gamma"].reshape(3, 9).mean(0)
  ldir = jnp.array([-g[3], -g[1], g[2]])
  lstr = jnp.linalg.norm(ldir)
  h = ldir / jnp.maximum(lstr, 1e-6) + jnp.array([0.0, 0.0, 1.0])
  h = h / jnp.linalg.norm(h)
  ks = jnp.where(is_hair, 0.12, jnp.where(lens | (part == sw.PART["glasses"]), 0.5, f["specular"]))
  shin = jnp.where(is_hair, 12.0, jnp.where(is_eye | lens, 80.0, 20.0))
  spec = ks * jnp.clip((n * h).sum(-1), 0, 1) ** shin * (0.3 + 2.0 * lstr)
  colour = jnp.clip(alb * shade + spec[..., None] * shade.mean(-1, keepdims=True), 0, 1)
  colour = jnp.where((is_eye & glint)[..., None], jnp.maximum(colour, 0.85), colour)
  rows, cols = jnp.meshgrid(jnp.arange(resolution), jnp.arange(resolution), indexing="ij")
  u, v = rz.pixel_ndc(rows, cols, (resolution, resolution))
  image = jnp.where(covered[..., None], colour, background(f, u, v))
  image = rz.antialias(image, frags, clip, tri, topology=jnp.asarray(st["topology"]))
  px = cam_lib.clip_to_pixels(clip[:n_face], (resolution, resolution))
  return {
      "image": jnp.clip(image, 0, 1) ** (1 / 2.2), "seg": label.astype(jnp.int32),
      "face_mask": covered & jnp.asarray(st["face_render"])[tid],
      "landmarks468": px[:468], "landmarks68": px[jnp.asarray(mp468.LANDMARKS68)],
      "depth": frags.depth,
  }
