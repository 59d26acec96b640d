"""Bare renders of the world's true coefficients (jaxface/runs/render_mix.py): they are the world image's own face,
and the batch mix shows them over a blurred, darkened world (an independent numpy reference)."""

import jax
import numpy as np

from configs import idnet as idnet_config
from jaxface.data import synthetic, synthetic_factors as sf
from jaxface.runs import render_mix
from jaxface.train import idnet


def _factors(n, world):
  return sf.stack([sf.sample_factors(i, world) for i in range(n)])


def test_true_renders_are_the_world_images_face():
  """Inside the world's face mask the render of the true coefficients is the world image itself (the world draws
  its face with the same model); the masks agree up to the eyes, hairline and edge pixels."""
  world = sf.as_world_config({})
  fs = _factors(4, world)
  images = synthetic.render_batch(fs, 64, world)
  renders, masks = render_mix.true_renders(fs, world, 64)
  face, covered = np.asarray(images["face_mask"]) > 0.5, np.asarray(masks) > 0.5
  assert (face ^ covered).mean() < 0.05 and covered.mean() > 0.1
  diff = np.abs(np.asarray(images["image"]) - np.asarray(renders))[face & covered]
  assert np.median(diff) < 0.01 and diff.mean() < 0.03
  shuffled = np.abs(np.asarray(images["image"]) - np.asarray(renders)[::-1])[face & covered[::-1]]
  assert shuffled.mean() > 5 * diff.mean()  # another sample's render does not match


def test_render_mix_shows_renders_over_a_blurred_darkened_world():
  """mix_in_renders: fraction 0 keeps the world images; fraction 1 shows the render inside its mask and, outside,
  the world image blurred to 4x4 detail (checked against an independent numpy box-average) times one brightness."""
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(3, 16, 16, 3)).astype(np.float32)
  renders = rng.uniform(size=(3, 16, 16, 3)).astype(np.float32)
  masks = np.zeros((3, 16, 16), np.float32)
  masks[:, 4:12, 5:11] = 1.0
  key = jax.random.key(1)
  np.testing.assert_array_equal(np.asarray(render_mix.mix_in_renders(images, renders, masks, key, 0.0)), images)
  out = np.asarray(render_mix.mix_in_renders(images, renders, masks, key, 1.0))
  inside = masks[..., None] > 0
  np.testing.assert_array_equal(np.where(inside, out, 0), np.where(inside, renders, 0))
  coarse = images.reshape(3, 4, 4, 4, 4, 3).mean((2, 4))  # 4x4 box averages
  for b in range(3):
    scale = out[b, 0, 0] / np.asarray(jax.image.resize(coarse[b], (16, 16, 3), "linear"))[0, 0]
    assert np.allclose(scale, scale[0], rtol=1e-4) and 0 <= scale[0] <= 1  # one brightness per image
    expected = scale[0] * np.asarray(jax.image.resize(coarse[b], (16, 16, 3), "linear"))
    np.testing.assert_allclose(out[b][~inside[b, ..., 0]], expected[~inside[b, ..., 0]], rtol=1e-4, atol=1e-6)


def test_idnet_batches_mix_renders_of_their_identity():
  """configs/idnet.py render_mix: 0 renders world images only; 1 shows every sample's bare render (in [-1, 1])."""
  config = idnet_config.get_config("tiny")
  world = sf.as_world_config(config.data)
  fs = _factors(3, world)
  res = config.data.resolution
  worlds = np.asarray(synthetic.render_batch(fs, res, config.data)["image"]) * 2 - 1
  np.testing.assert_allclose(np.asarray(idnet.render(config, fs, jax.random.key(0))), worlds, atol=1e-6)
  config.render_mix = 1.0
  renders, masks = render_mix.true_renders(fs, config.data, res)
  mixed = np.asarray(idnet.render(config, fs, jax.random.key(0)))
  inside = np.asarray(masks)[..., None] > 0.999  # edge pixels blend with the background
  np.testing.assert_allclose(np.where(inside, mixed, 0), np.where(inside, np.asarray(renders) * 2 - 1, 0),
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(idnet.render(config, fs)), worlds, atol=1e-6)  # no rng: no mix (eval)
