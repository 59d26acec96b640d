"""StyleGAN2 adversarial losses and regularizers, as pure functions (computed in at least float32).

Logistic GAN loss with the non-saturating generator loss (Goodfellow et al. 2014), R1 gradient penalty
(Mescheder et al. 2018), path-length regularization and lazy regularization (Karras et al. 2020, StyleGAN2).
Weights (r1_gamma / 2, pl_weight, the regularization interval) are applied by the trainer.
"""

import jax
import jax.numpy as jnp

from jaxface.errors import ConfigError


def _f32(x):
  """At least float32 (bfloat16 -> float32; float64 stays, for finite-difference checks under x64)."""
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def d_logistic(real_logits, fake_logits):
  """Discriminator logistic loss: mean softplus(fake) + mean softplus(-real)."""
  real, fake = _f32(real_logits), _f32(fake_logits)
  return jnp.mean(jax.nn.softplus(fake)) + jnp.mean(jax.nn.softplus(-real))


def g_nonsaturating(fake_logits):
  """Generator non-saturating loss: mean softplus(-fake) = -mean log sigmoid(fake)."""
  return jnp.mean(jax.nn.softplus(-_f32(fake_logits)))


def r1_penalty(d_fn, reals):
  """R1: mean over the batch of ||dD(x)/dx||^2 summed over pixels and channels, at the real images.

  d_fn(x) -> per-sample logits [B]; differentiable w.r.t. whatever d_fn closes over (double backprop). The
  gradient is that of the summed logits, as in StyleGAN2; minibatch-stddev couples the samples of a group
  slightly, and that coupling is part of the penalized gradient there too.
  """
  def total(x):
    return jnp.sum(_f32(d_fn(x)))

  grads = jax.grad(total)(reals)
  sq = jnp.square(_f32(grads))
  return jnp.mean(jnp.sum(sq.reshape(sq.shape[0], -1), axis=1))


def _lengths(vjp_fn, y):
  (grads,) = vjp_fn(y)
  sq = jnp.sum(jnp.square(_f32(grads)), axis=-1)  # [B, num_ws] or [B]
  return jnp.sqrt(jnp.mean(sq.reshape(sq.shape[0], -1), axis=1))


def path_lengths(synth_fn, ws, y):
  """|J^T y| per sample: g = d sum(synth_fn(ws) * y) / d ws; sqrt(mean over style layers of sum over w_dim g^2)."""
  _, vjp_fn = jax.vjp(lambda w: _f32(synth_fn(w)), ws)
  return _lengths(vjp_fn, y)


def path_length_penalty(synth_fn, ws, pl_mean, rng, decay=0.01):
  """StyleGAN2 path-length regularizer. Returns (penalty, new_pl_mean).

  y = jax.random.normal(rng, img.shape) / sqrt(H * W) (images [B, H, W, C]); lengths = path_lengths(...);
  pl_mean <- pl_mean + decay * (mean(lengths) - pl_mean), without gradient; penalty = mean((lengths -
  new_pl_mean)^2). ws [B, num_ws, w_dim] (or [B, w_dim]). Differentiable w.r.t. what synth_fn closes over.
  """
  img, vjp_fn = jax.vjp(lambda w: _f32(synth_fn(w)), ws)
  h, w = img.shape[1], img.shape[2]
  y = jax.random.normal(rng, img.shape, img.dtype) / jnp.sqrt(jnp.asarray(h * w, img.dtype))
  lengths = _lengths(vjp_fn, y)
  pl_mean = jnp.asarray(pl_mean, lengths.dtype)
  new_pl_mean = jax.lax.stop_gradient(pl_mean + decay * (jnp.mean(lengths) - pl_mean))
  penalty = jnp.mean(jnp.square(lengths - new_pl_mean))
  return penalty, new_pl_mean


def lazy_reg_adam_scaling(lr, beta1, beta2, interval):
  """Adam hyperparameters for a loss whose regularizer runs every `interval` steps (StyleGAN2 lazy regularization).

  With mb_ratio = interval / (interval + 1): lr * mb_ratio, beta1 ** mb_ratio, beta2 ** mb_ratio, so the
  optimizer's time constants stay the same in images seen. interval None or 0 disables the correction.
  """
  if interval is None or interval == 0:
    return lr, beta1, beta2
  if interval < 0 or int(interval) != interval:
    raise ConfigError(f"regularization interval must be a positive integer (or 0/None to disable lazy "
                      f"regularization), got {interval!r}")
  ratio = interval / (interval + 1)
  return lr * ratio, beta1 ** ratio, beta2 ** ratio
