"""SSIM against scikit-image's implementation (an independent reference); MS-SSIM's defining properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from jaxface.losses import ssim


def _pair(seed, shape=(2, 48, 40, 3), noise=0.3):
  r = np.random.default_rng(seed)
  base = np.cumsum(np.cumsum(r.normal(size=shape), 1), 2)  # smooth structure, like images
  base = np.tanh(base / base.std())
  return base.astype(np.float32), np.clip(base + noise * r.normal(size=shape), -1, 1).astype(np.float32)


def test_ssim_matches_scikit_image():
  a, b = _pair(0)
  ours = np.asarray(ssim.ssim(a, b, data_range=2.0))
  ref = [structural_similarity(a[i], b[i], data_range=2.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=False) for i in range(len(a))]
  np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_ms_ssim_is_one_for_identical_images_and_falls_with_noise():
  a, _ = _pair(1, (1, 64, 64, 3))
  np.testing.assert_allclose(np.asarray(ssim.ms_ssim(a, a)), [1.0], atol=1e-5)
  scores = [float(ssim.ms_ssim(a, _pair(1, (1, 64, 64, 3), noise=s)[1])[0]) for s in (0.05, 0.2, 0.5, 1.0)]
  assert all(x > y for x, y in zip(scores, scores[1:])), scores
  assert scores[-1] < 0.5 < scores[0]


def test_scale_count_follows_image_size():
  assert [ssim.num_scales((s, s)) for s in (16, 32, 64, 128, 256, 1024)] == [1, 2, 3, 4, 5, 5]
  with pytest.raises(ValueError, match="smaller than"):
    ssim.ms_ssim(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)))
  with pytest.raises(ValueError, match="scales do not fit"):
    ssim.ms_ssim(np.zeros((1, 32, 32, 3)), np.zeros((1, 32, 32, 3)), scales=4)


def test_ms_ssim_gradient_matches_finite_differences():
  a, b = _pair(2, (1, 32, 32, 1), noise=0.2)
  f = lambda x: jnp.sum(ssim.ms_ssim(x, jnp.asarray(b)))
  g = np.asarray(jax.grad(f)(jnp.asarray(a)))
  r = np.random.default_rng(3)
  for _ in range(3):
    d = r.normal(size=a.shape).astype(np.float32)
    d /= np.linalg.norm(d)
    eps = 1e-2
    fd = (float(f(jnp.asarray(a + eps * d))) - float(f(jnp.asarray(a - eps * d)))) / (2 * eps)
    np.testing.assert_allclose(np.sum(g * d), fd, rtol=0.05, atol=2e-4)
