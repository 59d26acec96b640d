"""R-Net losses: coefficient regression, projected landmarks, and the photometric term through the renderer.

Pure functions of arrays (and a FaceModel / Camera, which are pytrees of arrays). On the synthetic world every
training image comes with its true coefficients, so the main signal is direct regression; the landmark and
photometric terms are Deep3DFaceRecon's self-supervised losses (Deng et al., CVPRW 2019), which also serve
real photos where no coefficients exist:
  landmark:    mean_k w_k ||p_k(pred) - p_k(true)||² / R²        (pixels normalised by the image width R)
  photometric: Σ_i M_i ||I_i - Î_i||₂ / Σ_i M_i                  (per-pixel colour distance inside the face mask)
"""

import jax
import jax.numpy as jnp

from jaxface.render import camera as cam_lib

_HP = jax.lax.Precision.HIGHEST


def group_slices(layout, order_names):
  """{group: (start, stop)} for a flat coefficient vector in the given group order."""
  out, start = {}, 0
  for name in order_names:
    n = layout.size(name)
    out[name] = (start, start + n)
    start += n
  return out


def coefficient_loss(pred, target, scale, slices, weights=None):
  """Per-group mean squared error of standardised coefficients.

  pred, target [B, C]; scale [C] (the data's per-dimension std, so every group is measured in its own units);
  slices {group: (start, stop)}; weights {group: w} (default 1). Returns (weighted total, {group: mse}).
  """
  err = ((pred - target) / scale) ** 2
  terms = {name: err[:, a:b].mean() for name, (a, b) in slices.items()}
  weights = weights or {}
  total = sum(weights.get(name, 1.0) * v for name, v in terms.items())
  return total, terms


def landmark_points(fm, coeffs, camera, resolution):
  """The 68 landmarks [68, 2] (pixels: x right, y down, centres at +0.5) of one coefficient dict.

  Only the landmark vertices are built (mean + id_basis·id + exp_basis·exp, then V·Rᵀ + t and the camera), so
  this is the renderer's landmark function without rasterizing; it equals `render(...)["landmarks"]`.
  """
  idx = fm.landmarks68
  verts = (fm.mean_shape[idx] + jnp.einsum("vck,k->vc", fm.id_basis[idx], coeffs["id"], precision=_HP)
           + jnp.einsum("vck,k->vc", fm.exp_basis[idx], coeffs["exp"], precision=_HP))
  posed = cam_lib.rigid_transform(verts, coeffs["angle"], coeffs["trans"])
  return cam_lib.clip_to_pixels(cam_lib.project_clip(camera, posed), (resolution, resolution))


def landmark_loss(pred, target, resolution, weights=None):
  """Weighted mean squared landmark distance in units of the image width. pred, target [B, K, 2] pixels;
  weights [K] (Deep3DFaceRecon weights nose and inner mouth x20; default all 1, as DiscoFaceGAN)."""
  d2 = (((pred - target) / resolution) ** 2).sum(-1)
  if weights is None:
    return d2.mean()
  w = jnp.asarray(weights, d2.dtype)
  return (d2 * w).sum(-1).mean() / w.sum()


def photometric_loss(rendered, image, mask, eps=1e-8):
  """Deep3DFaceRecon's photometric loss: Σ M·||I - Î||₂ / Σ M over the batch.

  rendered, image [B, H, W, 3] (same colour space); mask [B, H, W] in [0, 1] (where the render is valid and
  the face is visible). eps keeps the gradient of the norm finite where the two images agree exactly.
  """
  dist = jnp.sqrt(((rendered - image) ** 2).sum(-1) + eps)
  return (mask * dist).sum() / jnp.maximum(mask.sum(), 1.0)


def gamma_mono_loss(gamma):
  """Deep3DFaceRecon's light regulariser: distance of the RGB SH coefficients [B, 27] from their channel mean."""
  g = gamma.reshape(gamma.shape[:-1] + (3, 9))
  return ((g - g.mean(-2, keepdims=True)) ** 2).mean()
