"""A batch's real images and the input iterator of a method's config: what every trainer and the evaluators read."""

import jax.numpy as jnp

from jaxface.data import pipeline, synthetic


def real_images(config, batch):
  """A batch's real images as float32 in [-1, 1], [B, R, R, 3].

  Decoded datasets deliver uint8 images; the synthetic world delivers per-sample factors that are rendered here,
  inside the jitted step, on the device that holds the batch shard (a pure function: no communication).
  """
  if "image" in batch:
    return batch["image"].astype(jnp.float32) / 127.5 - 1.0
  rendered = synthetic.render_batch(batch, config.data.resolution, config.data)
  return rendered["image"].astype(jnp.float32) * 2.0 - 1.0


def data_iterator(config):
  """This host's slices of global batches of `config.data` (infinite, resumable), seeded by `config.seed`."""
  return pipeline.make_iterator(config.data, global_batch_size=config.batch_size, seed=config.seed)
