"""GAN losses: known values, R1 and path-length penalties against central finite differences (float64)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface.errors import UserError
from jaxface.losses import adversarial as A


def softplus(x):
  return np.logaddexp(0.0, x)


def test_d_logistic_and_g_nonsaturating_known_values():
  np.testing.assert_allclose(float(A.d_logistic(jnp.zeros(4), jnp.zeros(4))), 2 * np.log(2), rtol=1e-6)
  np.testing.assert_allclose(float(A.g_nonsaturating(jnp.zeros(3))), np.log(2), rtol=1e-6)
  real, fake = np.array([2.0, -1.0, 0.5]), np.array([1.0, -3.0, 4.0])
  np.testing.assert_allclose(float(A.d_logistic(jnp.asarray(real), jnp.asarray(fake))),
                             softplus(fake).mean() + softplus(-real).mean(), rtol=1e-6)
  np.testing.assert_allclose(float(A.g_nonsaturating(jnp.asarray(fake))), softplus(-fake).mean(), rtol=1e-6)
  # numerically stable at large logits; a perfect D has ~0 loss, a fooled one ~|logit|
  np.testing.assert_allclose(float(A.d_logistic(jnp.array([100.0]), jnp.array([-100.0]))), 0.0, atol=1e-6)
  np.testing.assert_allclose(float(A.d_logistic(jnp.array([-100.0]), jnp.array([-100.0]))), 100.0, rtol=1e-6)
  np.testing.assert_allclose(float(A.g_nonsaturating(jnp.array([-50.0]))), 50.0, rtol=1e-6)
  # bfloat16 logits are promoted: the loss is float32
  assert A.d_logistic(jnp.zeros(2, jnp.bfloat16), jnp.zeros(2, jnp.bfloat16)).dtype == jnp.float32


# A tiny "discriminator" with cross-pixel coupling, written once for numpy and jax.
def toy_d(x, theta, xp):
  b = x.shape[0]
  flat = x.reshape(b, -1)
  a = xp.linspace(-1.0, 1.5, flat.shape[1])
  return xp.sum(xp.tanh(theta * flat * a + 0.3), axis=1) + 0.1 * theta * xp.sum(flat, axis=1) ** 2


def np_grad(f, x, eps=1e-6):
  g = np.zeros_like(x)
  for i in np.ndindex(x.shape):
    d = np.zeros_like(x)
    d[i] = eps
    g[i] = (f(x + d) - f(x - d)) / (2 * eps)
  return g


def test_r1_penalty_matches_finite_differences():
  x = np.random.default_rng(0).standard_normal((3, 2, 2, 2))
  theta = 0.7
  g = np_grad(lambda v: toy_d(v, theta, np).sum(), x)
  want = np.mean(np.sum(g.reshape(3, -1) ** 2, axis=1))
  with jax.enable_x64(True):
    got = A.r1_penalty(lambda v: toy_d(v, theta, jnp), jnp.asarray(x))
    np.testing.assert_allclose(float(got), want, rtol=1e-6)
    # double backprop: d R1 / d theta (what the D update needs) vs finite differences of R1 itself
    r1 = lambda th: A.r1_penalty(lambda v: toy_d(v, th, jnp), jnp.asarray(x))
    fd = (float(r1(theta + 1e-5)) - float(r1(theta - 1e-5))) / 2e-5
    np.testing.assert_allclose(float(jax.grad(r1)(theta)), fd, rtol=1e-5)
  # the float32 path agrees too
  got32 = jax.jit(lambda v: A.r1_penalty(lambda u: toy_d(u, theta, jnp), v))(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(float(got32), want, rtol=1e-4)


# A tiny "synthesis": ws [B, n, d] -> images [B, H, W, C], nonlinear, every layer matters.
H, W, C = 3, 2, 2


def toy_synth(ws, theta, xp):
  b, n, d = ws.shape
  m = xp.sin(xp.arange(n * d * H * W * C).reshape(n * d, H * W * C) * 0.37)
  flat = ws.reshape(b, n * d)
  return (xp.tanh(theta * flat @ m) + 0.05 * (flat @ m) ** 2).reshape(b, H, W, C)


def test_path_length_penalty_matches_finite_differences():
  rng = np.random.default_rng(1)
  ws = rng.standard_normal((2, 3, 4))
  theta, pl_mean, decay = 0.8, 0.3, 0.01
  key = jax.random.key(7, impl="rbg")  # RngBitGenerator: threefry compiles slowly on XLA:CPU
  with jax.enable_x64(True):
    # the penalty's documented draw: y = normal(rng, img.shape) / sqrt(H * W)
    y = np.asarray(jax.random.normal(key, (2, H, W, C), jnp.float64)) / np.sqrt(H * W)
    g = np.stack([np_grad(lambda v: np.sum(toy_synth(v[None], theta, np) * y[b]), ws[b]) for b in range(2)])
    lengths = np.sqrt(np.mean(np.sum(g ** 2, axis=-1), axis=1))
    new_mean = pl_mean + decay * (lengths.mean() - pl_mean)
    synth = lambda th: functools.partial(toy_synth, theta=th, xp=jnp)
    np.testing.assert_allclose(np.asarray(A.path_lengths(synth(theta), jnp.asarray(ws), jnp.asarray(y))), lengths,
                               rtol=1e-6)
    pen, got_mean = A.path_length_penalty(synth(theta), jnp.asarray(ws), pl_mean, key, decay)
    np.testing.assert_allclose(float(got_mean), new_mean, rtol=1e-8)
    np.testing.assert_allclose(float(pen), np.mean((lengths - new_mean) ** 2), rtol=1e-6)
    # double backprop w.r.t. the generator's parameters (decay 0: pl_mean is then exactly a constant)
    f = lambda th: A.path_length_penalty(synth(th), jnp.asarray(ws), pl_mean, key, 0.0)[0]
    fd = (float(f(theta + 1e-5)) - float(f(theta - 1e-5))) / 2e-5
    np.testing.assert_allclose(float(jax.grad(f)(theta)), fd, rtol=1e-5)
    # no gradient flows through the running mean
    gm = jax.grad(lambda th: A.path_length_penalty(synth(th), jnp.asarray(ws), pl_mean, key, 0.5)[1])(theta)
    assert float(gm) == 0.0


def test_path_length_penalty_jit_float32_and_2d_ws():
  ws = jnp.asarray(np.random.default_rng(2).standard_normal((2, 3, 4)), jnp.float32)
  synth = functools.partial(toy_synth, theta=0.8, xp=jnp)
  eager = A.path_length_penalty(synth, ws, 0.0, jax.random.key(3, impl="rbg"))
  jitted = jax.jit(lambda w, m: A.path_length_penalty(synth, w, m, jax.random.key(3, impl="rbg")))(ws, 0.0)
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5)
  # [B, w_dim] latents: lengths are plain norms of the gradient
  y = jnp.ones((2, H, W, C))
  ws2 = ws[:, :1, :]
  l3 = A.path_lengths(synth, ws2, y)
  l2 = A.path_lengths(lambda w: synth(w[:, None, :]), ws2[:, 0], y)
  np.testing.assert_allclose(np.asarray(l2), np.asarray(l3), rtol=1e-6)


def test_lazy_reg_adam_scaling():
  lr, b1, b2 = A.lazy_reg_adam_scaling(0.002, 0.0, 0.99, 16)
  np.testing.assert_allclose([lr, b1, b2], [0.002 * 16 / 17, 0.0, 0.99 ** (16 / 17)], rtol=1e-12)
  lr, b1, b2 = A.lazy_reg_adam_scaling(0.0025, 0.5, 0.99, 4)
  np.testing.assert_allclose([lr, b1, b2], [0.002, 0.5 ** 0.8, 0.99 ** 0.8], rtol=1e-12)
  assert A.lazy_reg_adam_scaling(0.002, 0.0, 0.99, None) == (0.002, 0.0, 0.99)
  for bad in (-1, 2.5):
    with pytest.raises(UserError, match="positive integer"):
      A.lazy_reg_adam_scaling(0.002, 0.0, 0.99, bad)
