"""Segmentation losses for the face parser: pixel cross-entropy and a soft Dice term.

Cross-entropy is dominated by the large classes (background, skin, hair); mIoU weighs every class equally, and
the small ones (eyes, brows, nostrils) are a few pixels at 64x64. The soft Dice term (Milletari et al. 2016),
averaged over the classes present in the batch, gives each class the same say.
"""

import jax
import jax.numpy as jnp


def cross_entropy(logits, labels):
  """Mean pixel cross-entropy. logits [..., C] float, labels [...] int."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
  return -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), -1).mean()


def soft_dice(logits, labels, eps=1.0):
  """1 - mean over classes present in `labels` of 2·Σ p·y / (Σ p + Σ y + eps), sums over the whole batch."""
  c = logits.shape[-1]
  p = jax.nn.softmax(logits.astype(jnp.float32), -1).reshape(-1, c)
  y = jax.nn.one_hot(labels.reshape(-1), c, dtype=jnp.float32)
  inter, p_sum, y_sum = (p * y).sum(0), p.sum(0), y.sum(0)
  dice = 2.0 * inter / (p_sum + y_sum + eps)
  present = (y_sum > 0).astype(jnp.float32)
  return 1.0 - (dice * present).sum() / jnp.maximum(present.sum(), 1.0)
