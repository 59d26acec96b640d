"""Nitzan et al.'s losses (jaxface/losses/id_mapping.py) against independent numpy computations."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxface.losses import adversarial
from jaxface.losses import id_mapping as losses
from jaxface.models import id_mapper


def test_inverse_gaussian_mask_sums_to_one_and_weighs_the_border():
  m = losses.inverse_gaussian_mask(256)  # the original's sigma int(80 * 256 / 256) = 80
  assert m.shape == (256, 256)
  np.testing.assert_allclose(m.sum(), 1.0, rtol=1e-6)
  # corner / centre = exp(2 * 127.5^2 / (2 * 80^2)) = 12.68 when the Gaussian's own minimum is negligible
  x = np.arange(256) - 127.5
  g = np.outer(np.exp(-x**2 / 12800), np.exp(-x**2 / 12800))
  g /= g.sum()
  ref = g.max() + g.min() - g
  np.testing.assert_allclose(m, ref / ref.sum(), rtol=1e-5)
  assert 12.5 < m[0, 0] / m[127, 127] < 12.9
  assert m[0, 0] > m[0, 128] > m[127, 127]


def test_masked_l1_is_a_weighted_mean_per_image_summed_over_the_batch(rng):
  a = np.asarray(jax.random.uniform(rng, (3, 8, 8, 3), minval=-1, maxval=1))
  b = np.zeros_like(a)
  mask = losses.inverse_gaussian_mask(8, sigma=2)
  per_image = [(np.abs((a[i] + 1) / 2 - 0.5).mean(-1) * mask).sum() for i in range(3)]
  np.testing.assert_allclose(losses.masked_l1(a, b, mask), sum(per_image), rtol=1e-5)
  # the mask ratio: a difference only at the corner pixel costs (corner weight / centre weight) more than at the centre
  corner, centre = np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3))
  corner[0, 0, 0], centre[0, 3, 3] = 1.0, 1.0
  ratio = losses.masked_l1(corner, b[:1], mask) / losses.masked_l1(centre, b[:1], mask)
  np.testing.assert_allclose(ratio, mask[0, 0] / mask[3, 3], rtol=1e-5)


def test_pixel_loss_is_zero_for_identical_images_and_grows_with_noise(rng):
  x = jax.random.uniform(rng, (2, 64, 64, 3), minval=-1, maxval=1)
  mask = losses.inverse_gaussian_mask(64)
  assert abs(float(losses.pixel_loss(x, x, mask))) < 1e-5
  values = [float(losses.pixel_loss(jnp.clip(x + s * jax.random.normal(jax.random.key(1), x.shape), -1, 1), x, mask))
            for s in (0.05, 0.2, 0.5)]
  assert values[0] < values[1] < values[2]


def test_landmark_mse_is_in_160_pixel_units():
  a = jnp.zeros((2, 51, 2))
  b = jnp.full((2, 51, 2), 1.0)  # one pixel at 64x64 = 2.5 pixels of the 160 frame
  np.testing.assert_allclose(losses.landmark_mse(a, b, 64), 2.5**2, rtol=1e-6)


def test_embedding_l1_matches_numpy(rng):
  a, b = jax.random.normal(rng, (4, 16)), jax.random.normal(jax.random.key(2), (4, 16))
  np.testing.assert_allclose(losses.embedding_l1(a, b), np.abs(np.asarray(a) - np.asarray(b)).mean(), rtol=1e-6)


def test_r1_on_the_w_discriminator_matches_finite_differences():
  # D is a LeakyReLU MLP, piecewise linear: central differences are exact away from kinks (float32, eps 1e-3).
  d = id_mapper.LatentDiscriminator((8, 4))
  w = np.asarray(jax.random.normal(jax.random.key(3), (2, 6)), np.float64)
  params = d.init(jax.random.key(4), jnp.asarray(w, jnp.float32))["params"]
  fn = lambda x: np.asarray(d.apply({"params": params}, jnp.asarray(x, jnp.float32)), np.float64)
  r1 = float(adversarial.r1_penalty(lambda x: d.apply({"params": params}, x), jnp.asarray(w, jnp.float32)))
  eps, sq = 1e-3, []
  for i in range(2):  # sample i's logit depends only on w[i]: the summed-logit gradient is per sample
    g = []
    for k in range(6):
      e = np.zeros((2, 6))
      e[i, k] = eps
      g.append((fn(w + e)[i] - fn(w - e)[i]) / (2 * eps))
    sq.append(np.sum(np.square(g)))
  np.testing.assert_allclose(r1, np.mean(sq), rtol=1e-3)
