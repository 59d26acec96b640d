"""Identity losses vs independent numpy references: ArcFace margin logits/loss, DiscoFaceGAN's clipped cosine loss."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxface.losses import identity as idl


def _np_arcface(x, w, labels, s, m):
  """Reference written from the angles: logit_j = s cos(theta_j), target s cos(theta_y + m) (theta_y + m < pi)."""
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  w = w / np.linalg.norm(w, axis=0, keepdims=True)
  theta = np.arccos(np.clip(x @ w, -1, 1))
  logits = s * np.cos(theta)
  rows = np.arange(len(labels))
  t = theta[rows, labels]
  logits[rows, labels] = s * np.where(t + m < np.pi, np.cos(t + m), np.cos(t) - math.sin(math.pi - m) * m)
  z = logits - logits.max(1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(1, keepdims=True))
  return logits, -logp[rows, labels].mean()


def test_arcface_matches_numpy_reference():
  r = np.random.default_rng(0)
  x, w = r.normal(size=(16, 8)), r.normal(size=(8, 10))
  labels = r.integers(10, size=16)
  for s, m in ((64.0, 0.5), (32.0, 0.3), (1.0, 0.0)):
    want_logits, want_loss = _np_arcface(x, w, labels, s, m)
    logits = idl.arcface_logits(jnp.asarray(x), jnp.asarray(w), jnp.asarray(labels), s, m)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-4, atol=1e-3)
    loss, _ = idl.arcface_loss(jnp.asarray(x), jnp.asarray(w), jnp.asarray(labels), s, m)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-4)


def test_arcface_linear_continuation_past_pi_minus_m():
  # An embedding almost opposite its class centre: theta_y + m > pi, the target logit uses cos(theta) - m sin(m).
  x = jnp.array([[-1.0, 0.05]])
  w = jnp.array([[1.0, 0.0], [0.0, 1.0]]).T
  logits = idl.arcface_logits(x, w, jnp.array([0]), scale=1.0, margin=0.5)
  cos = float(-1 / math.hypot(1, 0.05))
  np.testing.assert_allclose(logits[0, 0], cos - math.sin(0.5) * 0.5, rtol=1e-5)
  # The target logit is monotone in theta across the switch, so the gradient never pushes the wrong way.
  thetas = np.linspace(2.0, math.pi, 200)
  xs = jnp.stack([jnp.cos(thetas), jnp.sin(thetas)], -1)
  vals = np.asarray(idl.arcface_logits(xs, w, jnp.zeros(200, jnp.int32), 1.0, 0.5)[:, 0])
  assert np.all(np.diff(vals) <= 1e-6)


def test_arcface_margin_raises_the_loss_and_accuracy_ignores_it():
  r = np.random.default_rng(1)
  x, w = r.normal(size=(32, 6)), r.normal(size=(6, 5))
  labels = np.argmax((x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=0)), 1)
  l0, a0 = idl.arcface_loss(x, w, labels, 16.0, 0.0)
  l1, a1 = idl.arcface_loss(x, w, labels, 16.0, 0.5)
  assert float(l1) > float(l0)
  assert float(a0) == float(a1) == 1.0


def test_arcface_gradient_matches_finite_differences():
  jax.config.update("jax_enable_x64", True)
  try:
    r = np.random.default_rng(2)
    x, w = jnp.asarray(r.normal(size=(4, 3))), jnp.asarray(r.normal(size=(3, 5)))
    labels = jnp.asarray([0, 2, 4, 1])
    f = lambda x: idl.arcface_loss(x, w, labels, 8.0, 0.4)[0]
    g = jax.grad(f)(x)
    eps = 1e-6
    for i, j in ((0, 0), (1, 2), (3, 1)):
      d = jnp.zeros_like(x).at[i, j].set(eps)
      np.testing.assert_allclose(g[i, j], (f(x + d) - f(x - d)) / (2 * eps), rtol=1e-5, atol=1e-8)
  finally:
    jax.config.update("jax_enable_x64", False)


def test_identity_loss_clip_and_consistency():
  a = jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
  b = jnp.array([[2.0, 0.0], [1.0, 1.0], [0.0, -3.0]])  # cos 1, 1/sqrt2, 0
  one_minus = np.array([0.0, 1 - 1 / math.sqrt(2), 1.0])
  np.testing.assert_allclose(idl.identity_loss(a, b), np.maximum(0.3, one_minus).mean(), rtol=1e-6)
  np.testing.assert_allclose(idl.identity_loss(a, b, clip=0.0), one_minus.mean(), rtol=1e-6)
  np.testing.assert_allclose(idl.identity_consistency_loss(a, b), one_minus.mean(), rtol=1e-6)
  # Below the clip (cos > 0.7) the loss gives no gradient: G is not pushed to copy the render exactly.
  g = jax.grad(lambda f: idl.identity_loss(f, a[:1]))(jnp.array([[1.0, 0.2]]))
  np.testing.assert_array_equal(g, 0.0)
  g = jax.grad(lambda f: idl.identity_loss(f, a[:1]))(jnp.array([[1.0, 2.0]]))
  assert float(jnp.abs(g).sum()) > 0
