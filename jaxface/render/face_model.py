"""The 3D morphable face model (3DMM) as a pytree of arrays, and its coefficient layouts.

A `FaceModel` holds everything the renderer needs about one morphable model: mean shape, identity and
expression bases, mean albedo and albedo basis (0..1 floats), triangles, per-vertex adjacent faces (for
normals), 68 landmark vertex indices, region masks and the render sub-mesh. Every morphable model in
jaxface (BFM09 via Deep3DFaceRecon, the built-in synthetic model on the MediaPipe mesh) uses it, so
losses and renderers never ask which one they got.

Conventions (as in the DiscoFaceGAN / Deep3DFaceRecon code):
- shape = mean_shape + id_basis·id + exp_basis·exp, in decimetres, already re-centred (the loaders
  subtract the centroid of the mean shape once, as Deep3DFaceRecon does at every decode).
- albedo = mean_albedo + albedo_basis·tex, in 0..1 (BFM's 0..255 divided by 255 at load time).
- face normal = normalize((v0 - v1) x (v1 - v2)); vertex normal = normalize(sum of adjacent face normals),
  with `vertex_faces` padded by the index F that points at an appended zero normal.
- coefficient vectors come in two orders that must be chosen explicitly: "d3dfr" = [id, exp, tex, angle,
  gamma, trans] (Deep3DFaceRecon, TF and PyTorch) and "disco" = [id, tex, exp, angle, gamma, trans]
  (DiscoFaceGAN's R-Net and its VAEs).
"""

import dataclasses
import jax
import jax.numpy as jnp
import numpy as np

from jaxface.errors import ConfigError
from jaxface.render.rasterize import edge_topology

COEFF_ORDERS = {
    "d3dfr": ("id", "exp", "tex", "angle", "gamma", "trans"),
    "disco": ("id", "tex", "exp", "angle", "gamma", "trans"),
}


@dataclasses.dataclass(frozen=True)
class CoeffLayout:
  """Sizes of each coefficient group; `order` picks where each group sits in a flat vector."""
  n_id: int = 80
  n_exp: int = 64
  n_tex: int = 80
  n_angle: int = 3
  n_gamma: int = 27
  n_trans: int = 3

  def size(self, name):
    return getattr(self, "n_" + name)

  @property
  def total(self):
    return self.n_id + self.n_exp + self.n_tex + self.n_angle + self.n_gamma + self.n_trans


def _check_order(order):
  if order not in COEFF_ORDERS:
    raise ConfigError(f"unknown coefficient order {order!r}; choose one of {sorted(COEFF_ORDERS)} "
                      "('d3dfr' = [id, exp, tex, angle, gamma, trans], 'disco' = [id, tex, exp, ...]).")
  return COEFF_ORDERS[order]


def split_coeffs(x, layout: CoeffLayout, order: str):
  """Flat coefficients [..., layout.total] -> dict id/exp/tex/angle/gamma/trans ([..., n] each).

  `order` is required ("d3dfr" or "disco"): the same 257 numbers mean different things in the two
  conventions, and guessing silently swaps expression and albedo.
  """
  names = _check_order(order)
  x = jnp.asarray(x)
  if x.shape[-1] != layout.total:
    raise ConfigError(f"coefficient vector has {x.shape[-1]} entries but the layout {layout} needs "
                      f"{layout.total}; check the face model's dimensions.")
  out, start = {}, 0
  for name in names:
    n = layout.size(name)
    out[name] = x[..., start:start + n]
    start += n
  return out


def join_coeffs(coeffs, layout: CoeffLayout, order: str):
  """Inverse of `split_coeffs`: dict of groups -> flat [..., layout.total] in `order`."""
  names = _check_order(order)
  parts = []
  for name in names:
    v = jnp.asarray(coeffs[name])
    if v.shape[-1] != layout.size(name):
      raise ConfigError(f"coefficient group {name!r} has {v.shape[-1]} entries, layout expects "
                        f"{layout.size(name)}.")
    parts.append(v)
  return jnp.concatenate(parts, axis=-1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FaceModel:
  """A morphable face model: arrays are pytree leaves, `name` is static metadata.

  Fields (V vertices, F triangles, Fr render triangles):
    mean_shape [V,3] f32; id_basis [V,3,n_id]; exp_basis [V,3,n_exp]; mean_albedo [V,3] (0..1);
    albedo_basis [V,3,n_tex]; tri [F,3] i32 (all triangles, for normals); vertex_faces [V,K] i32 (adjacent
    faces, padded with F); landmarks68 [68] i32 vertex indices (iBUG order); skin_mask [V] f32 (skin
    region for albedo regularisers); face_mask [V] f32 (photometric-loss region); render_tri [Fr,3] i32
    (the sub-mesh that is rasterized, indices into the full V); render_topology [Fr,3] i32 (for each render
    triangle and edge e = (v[(e+1)%3], v[(e+2)%3]), the opposite vertex of the neighbour across that
    edge, -1 at a mesh boundary; see rasterize.edge_topology).
  """
  mean_shape: jax.Array
  id_basis: jax.Array
  exp_basis: jax.Array
  mean_albedo: jax.Array
  albedo_basis: jax.Array
  tri: jax.Array
  vertex_faces: jax.Array
  landmarks68: jax.Array
  skin_mask: jax.Array
  face_mask: jax.Array
  render_tri: jax.Array
  render_topology: jax.Array
  name: str = dataclasses.field(default="face", metadata=dict(static=True))

  @property
  def n_vertices(self):
    return self.mean_shape.shape[0]

  @property
  def n_id(self):
    return self.id_basis.shape[-1]

  @property
  def n_exp(self):
    return self.exp_basis.shape[-1]

  @property
  def n_tex(self):
    return self.albedo_basis.shape[-1]

  @property
  def layout(self) -> CoeffLayout:
    return CoeffLayout(n_id=self.n_id, n_exp=self.n_exp, n_tex=self.n_tex)


def vertex_faces_from_tri(tri, n_vertices):
  """Per-vertex adjacent faces [V,K] (numpy int32), padded with F (the index of a zero normal)."""
  tri = np.asarray(tri, np.int64)
  f = tri.shape[0]
  flat_v = tri.reshape(-1)
  flat_f = np.repeat(np.arange(f), 3)
  order = np.argsort(flat_v, kind="stable")
  flat_v, flat_f = flat_v[order], flat_f[order]
  counts = np.bincount(flat_v, minlength=n_vertices)
  k = max(int(counts.max()) if counts.size else 1, 1)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  slot = np.arange(flat_v.size) - starts[flat_v]
  out = np.full((n_vertices, k), f, np.int32)
  out[flat_v, slot] = flat_f
  return out


def make_face_model(*, name, mean_shape, id_basis, exp_basis, mean_albedo, albedo_basis, tri,
                    landmarks68, vertex_faces=None, skin_mask=None, face_mask=None, render_tri=None,
                    recenter=True) -> FaceModel:
  """Builds a FaceModel from numpy arrays (0-based indices, albedo in 0..1), filling derived tables.

  vertex_faces defaults to the adjacency of `tri`; masks default to all ones; render_tri defaults to
  `tri`. With `recenter`, the centroid of the mean shape is subtracted (Deep3DFaceRecon convention).
  """

  mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 3)
  v = mean_shape.shape[0]
  if recenter:
    mean_shape = mean_shape - mean_shape.mean(axis=0, keepdims=True)
  tri = np.asarray(tri, np.int32).reshape(-1, 3)
  if tri.min() < 0 or tri.max() >= v:
    raise ValueError(f"triangle indices must be in [0, {v}); got [{tri.min()}, {tri.max()}]")
  render_tri = tri if render_tri is None else np.asarray(render_tri, np.int32).reshape(-1, 3)
  if vertex_faces is None:
    vertex_faces = vertex_faces_from_tri(tri, v)
  ones = np.ones((v,), np.float32)
  lm = np.asarray(landmarks68, np.int32).reshape(-1)
  return FaceModel(
      mean_shape=jnp.asarray(mean_shape),
      id_basis=jnp.asarray(np.asarray(id_basis, np.float32).reshape(v, 3, -1)),
      exp_basis=jnp.asarray(np.asarray(exp_basis, np.float32).reshape(v, 3, -1)),
      mean_albedo=jnp.asarray(np.asarray(mean_albedo, np.float32).reshape(v, 3)),
      albedo_basis=jnp.asarray(np.asarray(albedo_basis, np.float32).reshape(v, 3, -1)),
      tri=jnp.asarray(tri),
      vertex_faces=jnp.asarray(np.asarray(vertex_faces, np.int32)),
      landmarks68=jnp.asarray(lm),
      skin_mask=jnp.asarray(ones if skin_mask is None else np.asarray(skin_mask, np.float32).reshape(v)),
      face_mask=jnp.asarray(ones if face_mask is None else np.asarray(face_mask, np.float32).reshape(v)),
      render_tri=jnp.asarray(render_tri),
      render_topology=jnp.asarray(edge_topology(render_tri)),
      name=name,
  )


def shape(fm: FaceModel, id_coeff, exp_coeff):
  """Vertices [V,3] = mean + id_basis·id + exp_basis·exp (decimetres, model space)."""
  hp = jax.lax.Precision.HIGHEST
  return (fm.mean_shape + jnp.einsum("vck,k->vc", fm.id_basis, id_coeff, precision=hp)
          + jnp.einsum("vck,k->vc", fm.exp_basis, exp_coeff, precision=hp))


def albedo(fm: FaceModel, tex_coeff):
  """Per-vertex albedo [V,3] in 0..1 (not clipped: losses may want the raw linear model)."""
  return fm.mean_albedo + jnp.einsum("vck,k->vc", fm.albedo_basis, tex_coeff,
                                     precision=jax.lax.Precision.HIGHEST)


def face_normals(tri, verts):
  """Unit face normals [F,3]: normalize((v0 - v1) x (v1 - v2)), the BFM/D3DFR winding convention."""
  v0, v1, v2 = verts[tri[:, 0]], verts[tri[:, 1]], verts[tri[:, 2]]
  n = jnp.cross(v0 - v1, v1 - v2)
  return n / jnp.maximum(jnp.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def vertex_normals(fm: FaceModel, verts):
  """Unit vertex normals [V,3]: normalized sum of adjacent unit face normals (padding adds zero)."""
  fn = face_normals(fm.tri, verts)
  fn = jnp.concatenate([fn, jnp.zeros((1, 3), fn.dtype)], axis=0)
  n = fn[fm.vertex_faces].sum(axis=1)
  return n / jnp.maximum(jnp.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def landmark_groups():
  """iBUG-68 groups as index ranges (jaw, brows, nose, eyes, mouth), for weighting landmark losses."""
  return {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
          "mouth": range(48, 68)}


__all__ = ["FaceModel", "CoeffLayout", "COEFF_ORDERS", "split_coeffs", "join_coeffs", "make_face_model",
           "vertex_faces_from_tri", "shape", "albedo", "face_normals", "vertex_normals", "landmark_groups"]
