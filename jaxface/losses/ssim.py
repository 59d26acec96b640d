"""SSIM and multi-scale SSIM (Wang et al. 2003) as differentiable pure functions of image batches.

Images are [B, H, W, C] in any range; `data_range` is its width (2 for [-1, 1]). Local statistics use an
isotropic Gaussian window (11 taps, sigma 1.5) with 'valid' borders, C1 = (0.01 L)^2, C2 = (0.03 L)^2, as in
the paper. MS-SSIM combines the contrast-structure term at M - 1 scales (2x2 average pooling between scales)
with the full SSIM at the coarsest, weighted by the paper's exponents (0.0448, 0.2856, 0.3001, 0.2363, 0.1333).
Small images cannot hold five scales of an 11-tap window (64² holds three), so `ms_ssim` uses the largest M
that fits and renormalizes the first M exponents to sum to 1; it says which M it used through `num_scales`.
Negative per-scale terms (anti-correlated images) are clamped to a small positive floor before the fractional
powers, which would otherwise be undefined and have infinite gradients at 0.
"""

import jax
import jax.numpy as jnp
import numpy as np

MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FLOOR = 1e-6


def gaussian_window(size=11, sigma=1.5):
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-0.5 * (x / sigma) ** 2)
  return (g / g.sum()).astype(np.float32)


def _filter(x, g):
  """Separable 'valid' Gaussian filter of [B, H, W, C] per channel."""
  c = x.shape[-1]
  k = len(g)
  hp = jax.lax.Precision.HIGHEST
  kh = jnp.tile(jnp.asarray(g).reshape(k, 1, 1, 1), (1, 1, 1, c))
  kw = jnp.tile(jnp.asarray(g).reshape(1, k, 1, 1), (1, 1, 1, c))
  dn = ("NHWC", "HWIO", "NHWC")
  x = jax.lax.conv_general_dilated(x, kh, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=c, precision=hp)
  return jax.lax.conv_general_dilated(x, kw, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=c,
                                      precision=hp)


def _terms(a, b, data_range, size, sigma):
  """Per-image means of the luminance x contrast-structure map (SSIM) and of the contrast-structure map."""
  g = gaussian_window(size, sigma)
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  mu_a, mu_b = _filter(a, g), _filter(b, g)
  var_a = _filter(a * a, g) - mu_a ** 2
  var_b = _filter(b * b, g) - mu_b ** 2
  cov = _filter(a * b, g) - mu_a * mu_b
  cs = (2 * cov + c2) / (var_a + var_b + c2)
  lum = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
  return (lum * cs).mean((1, 2, 3)), cs.mean((1, 2, 3))


def _check(a, b, size):
  if a.shape != b.shape or a.ndim != 4:
    raise ValueError(f"SSIM needs two [B, H, W, C] batches of one shape, got {a.shape} and {b.shape}")
  if min(a.shape[1:3]) < size:
    raise ValueError(f"images of {a.shape[1]}x{a.shape[2]} are smaller than the {size}-tap SSIM window")


def ssim(a, b, data_range=2.0, size=11, sigma=1.5):
  """Mean SSIM per image [B]."""
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  _check(a, b, size)
  return _terms(a, b, data_range, size, sigma)[0]


def num_scales(height_width, size=11, max_scales=len(MS_WEIGHTS)):
  """The most scales (<= 5) whose coarsest level still holds the window: min side / 2^(M-1) >= size."""
  side = min(height_width)
  m = 1
  while m < max_scales and side // 2 ** m >= size:
    m += 1
  return m


def _pool2(x):
  b, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean((2, 4))


def ms_ssim(a, b, data_range=2.0, size=11, sigma=1.5, scales=None):
  """Multi-scale SSIM per image [B] (1 for identical images). scales: None = as many as fit (see module doc)."""
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  _check(a, b, size)
  m = num_scales(a.shape[1:3], size) if scales is None else int(scales)
  if not 1 <= m <= len(MS_WEIGHTS) or min(a.shape[1:3]) // 2 ** (m - 1) < size:
    raise ValueError(f"{m} MS-SSIM scales do not fit {a.shape[1]}x{a.shape[2]} images with a {size}-tap window")
  w = np.asarray(MS_WEIGHTS[:m], np.float64)
  w = w / w.sum()
  out = jnp.ones(a.shape[0], jnp.float32)
  for j in range(m):
    full, cs = _terms(a, b, data_range, size, sigma)
    term = full if j == m - 1 else cs
    out = out * jnp.maximum(term, FLOOR) ** float(w[j])
    if j < m - 1:
      a, b = _pool2(a), _pool2(b)
  return out
