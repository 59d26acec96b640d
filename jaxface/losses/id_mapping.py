"""Nitzan et al.'s non-adversarial losses as pure functions (SIGGRAPH Asia 2020).

Images are [B, R, R, 3] in [-1, 1]; the original's formulas are on [0, 1] images, so pixel terms convert first.
The adversarial terms are StyleGAN's logistic ones on w (jaxface/losses/adversarial.py).
"""

import jax.numpy as jnp
import numpy as np

from jaxface.losses import ssim as ssim_lib

MIX_SSIM = 0.84  # Zhao et al.'s "mix" weighting of (1 - MS-SSIM) against the masked L1
LANDMARK_FRAME = 160.0  # the original's landmark network reports pixels of a 160x160 image


def inverse_gaussian_mask(resolution, sigma=None):
  """[R, R] weights summing to 1 that are SMALLEST at the centre: normalise(max(g) + min(g) - g) for g a
  separable Gaussian centred at (R - 1) / 2. sigma defaults to the original's int(80 R / 256). The pixel loss
  leaves the face centre to the identity and landmark losses and weighs the surroundings (hair, background)."""
  sigma = int(80 * resolution / 256) if sigma is None else sigma
  sigma = max(float(sigma), 1.0)
  x = np.arange(resolution, dtype=np.float64) - (resolution - 1) / 2.0
  g1 = np.exp(-x**2 / (2.0 * sigma**2))
  g = np.outer(g1, g1)
  g /= g.sum()
  m = g.max() + g.min() - g
  return (m / m.sum()).astype(np.float32)


def masked_l1(out, target, mask):
  """Σ_b Σ_hw m_hw · mean_c |out - target| on [0, 1] images: a weighted mean per image (m sums to 1), SUMMED over
  the batch as the original's Keras MeanAbsoluteError(reduction=SUM, sample_weight=mask) does."""
  diff = jnp.mean(jnp.abs(_unit(out) - _unit(target)), axis=-1)
  return jnp.sum(diff * jnp.asarray(mask)[None])


def pixel_loss(out, target, mask, mix=MIX_SSIM):
  """mix · mean_b (1 - MS-SSIM) + (1 - mix) · masked L1 (the reconstruction steps' pixel term)."""
  ms = ssim_lib.ms_ssim(_unit(out), _unit(target), data_range=1.0)
  return mix * jnp.mean(1.0 - ms) + (1.0 - mix) * masked_l1(out, target, mask)


def embedding_l1(features, target_features):
  """Mean absolute difference of identity embeddings (Keras MAE over the last axis, then the batch mean). The
  target is a constant: callers pass it through stop_gradient."""
  return jnp.mean(jnp.abs(features.astype(jnp.float32) - target_features.astype(jnp.float32)))


def landmark_mse(points, target_points, resolution):
  """Mean squared landmark difference, in pixels of a 160x160 frame as the original's network reports them.
  points [B, K, 2] in pixels of an R x R image."""
  scale = LANDMARK_FRAME / float(resolution)
  d = (points.astype(jnp.float32) - target_points.astype(jnp.float32)) * scale
  return jnp.mean(jnp.square(d))


def _unit(x):
  return (jnp.asarray(x, jnp.float32) + 1.0) * 0.5
