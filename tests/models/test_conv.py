"""models/conv.py: the three convolutions against numpy definitions, their first and second derivatives against
XLA's own autodiff of lax.conv_general_dilated, and the property they exist for (no reversed-window convolution,
XLA:CPU's slow path, in a double backward)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxface.models import conv as C

LAYOUT = ("NHWC", "HWIO", "NHWC")
CASES = [  # (H, W, kh, kw, stride, padding)
    (9, 10, 3, 3, 2, ((1, 1), (0, 2))),
    (8, 8, 3, 3, 1, ((1, 1), (1, 1))),
    (7, 6, 2, 1, 2, ((0, 0), (0, 0))),
    (6, 5, 1, 1, 1, ((0, 0), (0, 0))),
    (11, 11, 4, 4, 2, ((2, 1), (2, 1))),
]


def _rand(seed, *shape):
  return np.random.default_rng(seed).standard_normal(shape)


def np_conv(x, w, stride, padding):
  """y[n,a,b,o] = sum_{i,j,c} xp[n, s*a+i, s*b+j, c] w[i,j,c,o], float64 loops over the kernel taps."""
  (t, b), (l, r) = padding
  xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
  kh, kw = w.shape[:2]
  ho, wo = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
  y = np.zeros((x.shape[0], ho, wo, w.shape[3]))
  for i in range(kh):
    for j in range(kw):
      y += np.einsum("nhwc,co->nhwo", xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride],
                     w[i, j])
  return y


def np_conv_transpose(y, w, stride, padding, in_hw):
  """The adjoint of np_conv in x, as a scatter: dx[s*a+i-t, s*b+j-l] += y[a, b] w[i, j]^T."""
  (t, b), (l, r) = padding
  kh, kw = w.shape[:2]
  hp, wp = in_hw[0] + t + b, in_hw[1] + l + r
  xp = np.zeros((y.shape[0], hp, wp, w.shape[2]))
  ho, wo = y.shape[1:3]
  for i in range(kh):
    for j in range(kw):
      xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride] += np.einsum(
          "nhwo,co->nhwc", y, w[i, j])
  return xp[:, t:t + in_hw[0], l:l + in_hw[1]]


def np_weight_grad(x, y, stride, padding, k_hw):
  (t, b), (l, r) = padding
  xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
  ho, wo = y.shape[1:3]
  g = np.zeros(k_hw + (x.shape[3], y.shape[3]))
  for i in range(k_hw[0]):
    for j in range(k_hw[1]):
      g[i, j] = np.einsum("nhwc,nhwo->co", xp[:, i:i + stride * (ho - 1) + 1:stride,
                                              j:j + stride * (wo - 1) + 1:stride], y)
  return g


@pytest.mark.parametrize("h,w,kh,kw,stride,padding", CASES)
def test_the_three_convolutions_match_numpy(h, w, kh, kw, stride, padding):
  x, k = _rand(0, 2, h, w, 3), _rand(1, kh, kw, 3, 4)
  y = np_conv(x, k, stride, padding)
  got = jax.jit(C.conv, static_argnums=(2, 3))(jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32), stride,
                                               padding)
  np.testing.assert_allclose(np.asarray(got), y, rtol=1e-4, atol=1e-4)
  assert C.output_size((h, w), (kh, kw), stride, padding) == y.shape[1:3]
  dy = _rand(2, *y.shape)
  got = C.conv_transpose(jnp.asarray(dy, jnp.float32), jnp.asarray(k, jnp.float32), stride, padding, (h, w))
  np.testing.assert_allclose(np.asarray(got), np_conv_transpose(dy, k, stride, padding, (h, w)), rtol=1e-4,
                             atol=1e-4)
  got = C.conv_weight_grad(jnp.asarray(x, jnp.float32), jnp.asarray(dy, jnp.float32), stride, padding, (kh, kw))
  np.testing.assert_allclose(np.asarray(got), np_weight_grad(x, dy, stride, padding, (kh, kw)), rtol=1e-4,
                             atol=1e-4)


def _rel(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))


@pytest.mark.parametrize("h,w,kh,kw,stride,padding", CASES)
def test_first_and_second_derivatives_match_xla_autodiff(h, w, kh, kw, stride, padding):
  x = jnp.asarray(_rand(3, 2, h, w, 3), jnp.float32)
  k = jnp.asarray(_rand(4, kh, kw, 3, 4), jnp.float32)
  ref = lambda x, k: lax.conv_general_dilated(x, k, (stride, stride), padding, dimension_numbers=LAYOUT)
  ours = lambda x, k: C.conv(x, k, stride, padding)
  first = lambda f: jax.grad(lambda x, k: jnp.sum(jnp.tanh(f(x, k))), argnums=(0, 1))(x, k)
  # an R1-like double backward: the gradient w.r.t. both of a function of the input gradient
  second = lambda f: jax.grad(lambda x, k: jnp.sum(jnp.sin(jax.grad(
      lambda x: jnp.sum(jnp.tanh(f(x, k))))(x))), argnums=(0, 1))(x, k)
  for a, b in zip(first(ref), first(ours)):
    assert _rel(a, b) < 1e-5
  for a, b in zip(second(ref), second(ours)):
    assert _rel(a, b) < 1e-5


def test_transpose_and_weight_grad_are_differentiable_to_second_order():
  """conv_transpose (the generator's up-conv) under a path-length-like double backward, against XLA's autodiff of
  the same input-dilated convolution."""
  y = jnp.asarray(_rand(5, 2, 4, 5, 3), jnp.float32)
  k = jnp.asarray(_rand(6, 3, 3, 2, 3), jnp.float32)  # conv kernel [kh, kw, I=2, O=3]: the transpose maps 3 -> 2
  in_hw = (9, 11)
  ref = lambda y, k: lax.conv_general_dilated(y, jnp.flip(k, (0, 1)).swapaxes(2, 3), (1, 1), ((2, 2), (2, 2)),
                                              lhs_dilation=(2, 2), dimension_numbers=LAYOUT)
  ours = lambda y, k: C.conv_transpose(y, k, 2, ((0, 0), (0, 0)), in_hw)
  np.testing.assert_allclose(np.asarray(ours(y, k)), np.asarray(ref(y, k)), rtol=1e-5, atol=1e-5)
  second = lambda f: jax.grad(lambda y, k: jnp.sum(jnp.square(jax.grad(
      lambda y: jnp.sum(jnp.tanh(f(y, k))))(y))), argnums=(0, 1))(y, k)
  for a, b in zip(second(ref), second(ours)):
    assert _rel(a, b) < 1e-5


def test_a_strided_double_backward_has_no_reversed_window():
  """The compiled R1-style double backward of a stride-2 conv holds convolutions, none with a reversed window:
  the form XLA:CPU cannot send to Eigen and runs through a naive loop (0.8 s for one 64x64x64 layer)."""
  x = jnp.zeros((2, 17, 17, 8), jnp.float32)
  k = jnp.zeros((3, 3, 8, 8), jnp.float32)
  r1 = lambda k, x: jnp.sum(jnp.square(jax.grad(lambda x: jnp.sum(jnp.tanh(C.conv(x, k, 2, ((0, 0), (0, 0))))))(x)))
  hlo = jax.jit(jax.grad(r1)).lower(k, x).compile().as_text()
  convs = [line for line in hlo.splitlines() if " convolution(" in line]
  assert len(convs) >= 3, hlo
  assert not [line for line in convs if "reversal" in line], "\n".join(convs)


SMALL_CASES = [  # (H, W, kh, kw, stride, padding): outputs of <= SMALL_OUTPUT positions, where patches are used
    (2, 2, 3, 3, 1, ((1, 1), (1, 1))),
    (1, 1, 3, 3, 1, ((1, 1), (1, 1))),
    (4, 4, 3, 3, 2, ((1, 1), (1, 1))),
    (3, 2, 2, 3, 2, ((0, 1), (2, 0))),
]


@pytest.mark.parametrize("h,w,kh,kw,stride,padding", SMALL_CASES)
def test_patches_conv_matches_numpy_and_xla_derivatives(h, w, kh, kw, stride, padding):
  x, k = _rand(7, 3, h, w, 5), _rand(8, kh, kw, 5, 4)
  got = C.patches_conv(jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32), stride, padding)
  np.testing.assert_allclose(np.asarray(got), np_conv(x, k, stride, padding), rtol=1e-4, atol=1e-4)
  x, k = jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)
  ref = lambda x, k: lax.conv_general_dilated(x, k, (stride, stride), padding, dimension_numbers=LAYOUT)
  ours = lambda x, k: C.patches_conv(x, k, stride, padding)
  second = lambda f: jax.grad(lambda x, k: jnp.sum(jnp.sin(jax.grad(
      lambda x: jnp.sum(jnp.tanh(f(x, k))))(x))), argnums=(0, 1))(x, k)
  for a, b in zip(second(ref), second(ours)):
    assert _rel(a, b) < 1e-5


@pytest.mark.parametrize("h,w,kh,kw,stride,padding", CASES + SMALL_CASES)
def test_conv_general_dilated_is_a_drop_in_for_lax(h, w, kh, kw, stride, padding):
  """Same result as lax.conv_general_dilated for the explicit and string paddings Flax passes, through whichever
  form it picks (patches exactly where the output has <= SMALL_OUTPUT positions)."""
  x, k = jnp.asarray(_rand(9, 2, h, w, 3), jnp.float32), jnp.asarray(_rand(10, kh, kw, 3, 4), jnp.float32)
  dn = lax.conv_dimension_numbers(x.shape, k.shape, LAYOUT)
  for pad in (padding, "SAME", "VALID"):
    want = lax.conv_general_dilated(x, k, (stride, stride), pad, dimension_numbers=dn)
    got = C.conv_general_dilated(x, k, (stride, stride), pad, lhs_dilation=(1, 1), rhs_dilation=(1, 1),
                                 dimension_numbers=dn)
    assert got.shape == want.shape
    assert want.size == 0 or _rel(want, got) < 1e-5  # VALID leaves no output where the kernel exceeds the map
  small = np.prod(C.output_size((h, w), (kh, kw), stride, padding)) <= C.SMALL_OUTPUT
  hlo = jax.jit(lambda x, k: C.conv_general_dilated(x, k, (stride, stride), padding,
                                                    dimension_numbers=dn)).lower(x, k).as_text()
  assert ("convolution" in hlo) != small, hlo


def test_conv_general_dilated_refuses_what_it_does_not_compute():
  x, k = jnp.zeros((1, 6, 6, 4)), jnp.zeros((3, 3, 4, 4))
  with pytest.raises(ValueError, match="unequal strides"):
    C.conv_general_dilated(x, k, (1, 2), "SAME", dimension_numbers=LAYOUT)
  with pytest.raises(ValueError, match="dilation"):
    C.conv_general_dilated(x, k, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=LAYOUT)
  with pytest.raises(ValueError, match="groups"):
    C.conv_general_dilated(x, jnp.zeros((3, 3, 2, 4)), (1, 1), "SAME", dimension_numbers=LAYOUT,
                           feature_group_count=2)
  with pytest.raises(ValueError, match="layout"):
    C.conv_general_dilated(jnp.zeros((1, 4, 6, 6)), k, (1, 1), "SAME", dimension_numbers=("NCHW", "HWIO", "NCHW"))


def test_flax_conv_keeps_nn_conv_parameters_and_outputs():
  """models.conv.Conv is nn.Conv computed here: the same parameter tree (checkpoints and converted weights load
  unchanged) and the same outputs, on a map large enough for `conv` and one small enough for patches."""
  import flax.linen as nn  # local: only this test builds Flax modules
  for size, stride in ((9, 2), (2, 1)):
    x = jnp.asarray(_rand(11, 2, size, size, 3), jnp.float32)
    ours, ref = C.Conv(6, (3, 3), stride, padding=1), nn.Conv(6, (3, 3), stride, padding=1)
    v = ref.init(jax.random.PRNGKey(0), x)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(0), x)) == jax.tree.map(jnp.shape, v)
    assert _rel(ref.apply(v, x), ours.apply(v, x)) < 1e-5
