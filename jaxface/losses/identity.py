"""Identity losses as pure functions (float32 throughout).

* `arcface_logits` / `arcface_loss`: ArcFace's additive angular margin (Deng et al. 2019): with unit embedding x and
  unit class centre W_j, cos(theta_j) = <x, W_j>; the true class's logit becomes cos(theta_y + m), all logits are
  scaled by s, then softmax cross-entropy. Where theta_y + m would pass pi (cos(theta_y + m) stops decreasing),
  insightface falls back to the linear continuation cos(theta_y) - m sin(m); we do the same, so the target logit
  stays monotone in theta_y.
* `identity_loss`: DiscoFaceGAN's imitative identity loss, mean(max(clip, 1 - cos(f_a, f_b))) with clip 0.3 ("need
  clip! IMPORTANT" in its training/loss.py): features closer than cos 0.7 get no gradient, so G is not pushed to
  copy the render's flat look exactly.
* `identity_consistency_loss`: the contrastive version, mean(1 - cos) with no clip.
"""

import math

import jax
import jax.numpy as jnp


def _f32(x):
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def l2_normalize(x, axis=-1, eps=1e-10):
  x = _f32(x)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps))


def cosine(a, b):
  """Row-wise cosine similarity of [B, D] features."""
  return jnp.sum(l2_normalize(a) * l2_normalize(b), axis=-1)


def arcface_logits(embeddings, centres, labels, scale=64.0, margin=0.5):
  """Scaled logits [B, C] with the additive angular margin on each row's label (embeddings [B, D], centres [D, C])."""
  cos = l2_normalize(embeddings) @ l2_normalize(centres, axis=0)
  cos = jnp.clip(cos, -1.0, 1.0)
  sin = jnp.sqrt(jnp.clip(1.0 - cos * cos, 0.0, 1.0))
  with_margin = cos * math.cos(margin) - sin * math.sin(margin)  # cos(theta + m)
  # Beyond theta = pi - m, continue linearly (insightface's `th`/`mm`), keeping the target logit monotone.
  with_margin = jnp.where(cos > math.cos(math.pi - margin), with_margin, cos - math.sin(math.pi - margin) * margin)
  onehot = jax.nn.one_hot(labels, cos.shape[-1], dtype=cos.dtype)
  return scale * jnp.where(onehot > 0, with_margin, cos)


def arcface_loss(embeddings, centres, labels, scale=64.0, margin=0.5):
  """Mean softmax cross-entropy of `arcface_logits`. Returns (loss, accuracy of the margin-free logits)."""
  logits = arcface_logits(embeddings, centres, labels, scale, margin)
  logp = jax.nn.log_softmax(logits, axis=-1)
  loss = -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))
  plain = l2_normalize(embeddings) @ l2_normalize(centres, axis=0)
  acc = jnp.mean((jnp.argmax(plain, -1) == labels).astype(jnp.float32))
  return loss, acc


def identity_loss(features, target_features, clip=0.3):
  """DiscoFaceGAN imitative identity loss: mean(max(clip, 1 - cos)). `clip=0` gives plain mean(1 - cos)."""
  return jnp.mean(jnp.maximum(clip, 1.0 - cosine(features, target_features)))


def identity_consistency_loss(features_a, features_b):
  """DiscoFaceGAN contrastive identity term: mean(1 - cos) between a pair that should share identity."""
  return jnp.mean(1.0 - cosine(features_a, features_b))
