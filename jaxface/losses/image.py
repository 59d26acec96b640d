"""Image-space building blocks for the DiscoFaceGAN losses: bilinear flow warp, Gaussian blur, masked
distances and means. Pure, differentiable, computed in at least float32.

Conventions shared by losses/imitative.py and losses/contrastive.py:
- images are NHWC (or HWC) in the generator's range [-1, 1]; renders (0..1 from render.render) are
  mapped with `from_unit` (the original's `process_reals` does the same to its renders);
- masks are [B,H,W] (or [H,W]) in 0..1;
- flows are [..., H, W, 2] holding (dx, dy) in pixels, x right and y down, the order and units of
  render.render_flow.
"""

import jax
import jax.numpy as jnp
import numpy as np


def f32(x):
  """At least float32 (bfloat16 -> float32; float64 stays, for finite-difference checks under x64)."""
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def from_unit(x):
  """0..1 -> [-1, 1]."""
  return f32(x) * 2.0 - 1.0


def to_unit(x, clip=True):
  """[-1, 1] -> 0..1; with `clip`, clipped as the original's `clip((x + 1) * 127.5, 0, 255)`."""
  y = (f32(x) + 1.0) * 0.5
  return jnp.clip(y, 0.0, 1.0) if clip else y


def _warp_one(image, flow):
  h, w = image.shape[0], image.shape[1]
  if h < 2 or w < 2:
    raise ValueError(f"warp needs images of at least 2x2 pixels, got {h}x{w}")
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=flow.dtype), jnp.arange(w, dtype=flow.dtype), indexing="ij")
  # Clamp the query to the image (edge replication, as TF's dense_image_warp / interpolate_bilinear do).
  qx = jnp.clip(cols + flow[..., 0], 0.0, w - 1.0)
  qy = jnp.clip(rows + flow[..., 1], 0.0, h - 1.0)
  x0 = jnp.clip(jnp.floor(jax.lax.stop_gradient(qx)), 0, w - 2)
  y0 = jnp.clip(jnp.floor(jax.lax.stop_gradient(qy)), 0, h - 2)
  ax, ay = (qx - x0)[..., None], (qy - y0)[..., None]
  x0i, y0i = x0.astype(jnp.int32), y0.astype(jnp.int32)
  tl, tr = image[y0i, x0i], image[y0i, x0i + 1]
  bl, br = image[y0i + 1, x0i], image[y0i + 1, x0i + 1]
  # (1 - a)·p + a·q (not p + a·(q - p)): integer queries return pixel values exactly.
  top = (1.0 - ax) * tl + ax * tr
  bottom = (1.0 - ax) * bl + ax * br
  return (1.0 - ay) * top + ay * bottom


def warp(image, flow):
  """Backward bilinear warp: out[y, x] = image at (x + dx(y, x), y + dy(y, x)).

  image [B,H,W,C] or [H,W,C]; flow [B,H,W,2] or [H,W,2] as (dx, dy) pixels. Queries outside the image
  are clamped to its border. Differentiable w.r.t. image and flow (piecewise: the bilinear weights carry
  the flow gradient; at exact integer positions the gradient is the one-sided one of the cell chosen).
  Equivalent to TF's `dense_image_warp(image, -flow[..., ::-1])`; DiscoFaceGAN calls
  `dense_image_warp(fake1, -F)` with F the rasterized (row, col) displacement, i.e. it samples image 1
  at the point where image 2's pixel was in image 1 -- `warp(fake_a, render_flow(fm, b, a)[0])` here.
  """
  image, flow = f32(image), f32(flow)
  if image.ndim == 3:
    return _warp_one(image, flow)
  return jax.vmap(_warp_one)(image, flow)


def gaussian_kernel(size=5, sigma=2.0):
  """Normalized 2D Gaussian [size,size] (numpy), the original's `gaussian_kernel` (size 5, sigma 2)."""
  r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  k = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * sigma ** 2))
  return (k / k.sum()).astype(np.float32)


def gaussian_blur(image, size=5, sigma=2.0):
  """Per-channel Gaussian blur with zero padding ('SAME'), as the original's depthwise conv2d.

  image [B,H,W,C] or [H,W,C]. Zero padding darkens the border toward 0 exactly as in the released code.
  """
  image = f32(image)
  squeeze = image.ndim == 3
  x = image[None] if squeeze else image
  c = x.shape[-1]
  k = jnp.asarray(gaussian_kernel(size, sigma), x.dtype)
  k = jnp.tile(k[:, :, None, None], (1, 1, 1, c))  # HWIO with I = 1 per group
  y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   feature_group_count=c, precision=jax.lax.Precision.HIGHEST)
  return y[0] if squeeze else y


def masked_mean(values, mask, eps=1e-8):
  """sum(mask * values) / sum(mask) over everything (all images pooled, as the released code does).

  An all-zero mask gives 0 (not NaN): the denominator is floored at `eps`.
  """
  values, mask = f32(values), f32(mask)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), eps)


def pixel_l2(a, b, eps=1e-8):
  """Per-pixel Euclidean distance over channels, sqrt(sum_c (a - b)^2 + eps): [...,H,W,C] -> [...,H,W].

  `eps` keeps the gradient finite where a == b (the original adds 1e-8 too).
  """
  return jnp.sqrt(jnp.sum(jnp.square(f32(a) - f32(b)), axis=-1) + eps)


def masked_l2(a, b, mask, eps=1e-8):
  """Masked mean of the per-pixel Euclidean colour distance (DiscoFaceGAN's "L1_loss" and warp loss)."""
  return masked_mean(pixel_l2(a, b, eps), mask)


def masked_l1(a, b, mask):
  """Masked mean of the per-pixel L1 colour distance sum_c |a - b|."""
  return masked_mean(jnp.sum(jnp.abs(f32(a) - f32(b)), axis=-1), mask)


def masked_mse(a, b, mask):
  """Masked mean of the per-pixel squared colour distance sum_c (a - b)^2."""
  return masked_mean(jnp.sum(jnp.square(f32(a) - f32(b)), axis=-1), mask)


def masked_channel_mean(image, mask, eps=1e-8):
  """Per-image mean colour inside the mask: image [B,H,W,C], mask [B,H,W] -> [B,C]."""
  image, mask = f32(image), f32(mask)
  num = jnp.sum(image * mask[..., None], axis=(-3, -2))
  return num / jnp.maximum(jnp.sum(mask, axis=(-2, -1))[..., None], eps)
