"""StyleGAN2 layers against direct numpy references (loops over taps, explicit per-sample weights)."""

import functools
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface.errors import UserError
from jaxface.models import layers as L
from jaxface.models import resample as R

F4 = np.array([1.0, 3.0, 3.0, 1.0]) / 8.0


# --------------------------------------------------------------------------------------------------------
# numpy references (float64, written from the definitions, no shared code with the implementation)
# --------------------------------------------------------------------------------------------------------

def np_upfirdn2d(x, f1, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0, flip_filter=False):
  """Zero-insert upsample, pad/crop, 2-D FIR convolution with outer(f1, f1) * gain, then subsample."""
  n, h, w, c = x.shape
  px0, px1, py0, py1 = pad
  z = np.zeros((n, h * up, w * up, c))
  z[:, ::up, ::up, :] = x
  # pad with zeros (positive) or crop (negative), per side
  z = np.pad(z, ((0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0)), (0, 0)))
  z = z[:, max(-py0, 0):z.shape[1] - max(-py1, 0), max(-px0, 0):z.shape[2] - max(-px1, 0), :]
  f2 = np.outer(f1, f1) * gain
  if not flip_filter:
    f2 = f2[::-1, ::-1]  # convolution = correlation with the flipped filter
  kh, kw = f2.shape
  oh, ow = z.shape[1] - kh + 1, z.shape[2] - kw + 1
  out = np.zeros((n, oh, ow, c))
  for i in range(kh):
    for j in range(kw):
      out += f2[i, j] * z[:, i:i + oh, j:j + ow, :]
  return out[:, ::down, ::down, :]


def np_correlate(x, w, pad):
  """x [N,H,W,I], w [k,k,I,O] -> stride-1 correlation with zero padding `pad` on each side."""
  k = w.shape[0]
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  oh, ow = xp.shape[1] - k + 1, xp.shape[2] - k + 1
  out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
  for i in range(k):
    for j in range(k):
      out += np.einsum("nhwi,io->nhwo", xp[:, i:i + oh, j:j + ow, :], w[i, j])
  return out


def np_transposed_conv2x(x, w):
  """Stride-2 transposed conv as a scatter: out[2i + a, 2j + b] += x[i, j] @ w[k-1-a, k-1-b] (i.e. PyTorch's
  conv_transpose2d with the spatially flipped kernel: correlation semantics on the zero-inserted grid)."""
  n, h, wd, _ = x.shape
  k = w.shape[0]
  out = np.zeros((n, 2 * (h - 1) + k, 2 * (wd - 1) + k, w.shape[3]))
  for a in range(k):
    for b in range(k):
      out[:, a:a + 2 * h:2, b:b + 2 * wd:2, :] += np.einsum("nhwi,io->nhwo", x, w[k - 1 - a, k - 1 - b])
  return out


def np_conv_resample(x, w, up=1, down=1):
  """StyleGAN2 resampling conv from its definition (stylegan2-ada `conv2d_resample`): up = transposed conv then
  FIR (gain 4) cropped to 2H; down = conv over the FIR-blurred (padded) image, keeping every second output."""
  k = w.shape[0]
  if up == 2:
    y = np_transposed_conv2x(x, w)  # 2H - 2 + k
    p = (5 - k) // 2  # output exactly 2H
    return np_upfirdn2d(y, F4, pad=(p, p, p, p), gain=4.0)
  if down == 2:
    if k == 1:
      return np_correlate(np_upfirdn2d(x, F4, down=2, pad=(1, 1, 1, 1)), w, 0)
    return np_correlate(np_upfirdn2d(x, F4, pad=(2, 2, 2, 2)), w, 0)[:, ::2, ::2, :]
  return np_correlate(x, w, k // 2)


def np_modconv(x, weight, styles, demodulate=True, up=1):
  """Explicit per-sample weights W_b = W * s_b (* d_b), one conv per sample."""
  outs = []
  for b in range(x.shape[0]):
    wb = weight * styles[b][None, None, :, None]
    if demodulate:
      wb = wb / np.sqrt(np.sum(wb ** 2, axis=(0, 1, 2), keepdims=True) + 1e-8)
    outs.append(np_conv_resample(x[b:b + 1], wb, up=up))
  return np.concatenate(outs)


def np_lrelu(x, gain=np.sqrt(2.0)):
  return np.where(x >= 0, x, 0.2 * x) * gain


def _rand(seed, *shape):
  return np.random.default_rng(seed).standard_normal(shape)


# --------------------------------------------------------------------------------------------------------
# upfirdn2d
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("up,down,pad,taps,flip", [
    (2, 1, (2, 1, 2, 1), F4, False),          # StyleGAN2 upsample2d
    (1, 2, (1, 1, 1, 1), F4, False),          # StyleGAN2 downsample2d
    (2, 2, (1, 2, 0, 3), [1.0, 2.0, 5.0], False),  # both, asymmetric padding, asymmetric taps
    (1, 1, (-1, 2, 3, -2), [1.0, 2.0, 5.0], True),  # negative padding crops; flip_filter
    (3, 2, (0, 0, 1, 1), [0.5, 1.0, -0.25, 2.0], False),
])
def test_upfirdn2d_matches_numpy(up, down, pad, taps, flip):
  x = _rand(0, 2, 7, 6, 3)
  got = R.upfirdn2d(jnp.asarray(x, jnp.float32), taps, up=up, down=down, padding=pad, gain=1.7, flip_filter=flip)
  want = np_upfirdn2d(x, np.asarray(taps), up, down, pad, gain=1.7, flip_filter=flip)
  assert got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_up_and_downsample2d_sizes_and_gain():
  x = _rand(1, 1, 8, 8, 2)
  up, down = jax.jit(lambda v: (R.upsample2d(v), R.downsample2d(v)))(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(up), np_upfirdn2d(x, F4, up=2, pad=(2, 1, 2, 1), gain=4.0), atol=1e-5)
  np.testing.assert_allclose(np.asarray(down), np_upfirdn2d(x, F4, down=2, pad=(1, 1, 1, 1)), atol=1e-5)
  # a constant image stays constant away from the zero-padded border (gain up^2 compensates zero insertion)
  const = jax.jit(R.upsample2d)(jnp.ones((1, 8, 8, 2)))
  np.testing.assert_allclose(np.asarray(const)[0, 2:-2, 2:-2], 1.0, rtol=1e-6)
  assert down.shape == (1, 4, 4, 2)


@pytest.mark.parametrize("k,up,down", [(3, 1, 1), (3, 2, 1), (1, 2, 1), (3, 1, 2), (1, 1, 2)])
def test_conv2d_resample_matches_numpy(k, up, down):
  x, w = _rand(2, 2, 6, 5, 3), _rand(3, k, k, 3, 4)
  got = R.conv2d_resample(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), up=up, down=down)
  want = np_conv_resample(x, w, up=up, down=down)
  assert got.shape == want.shape == (2, 6 * up // down, 5 * up // down, 4)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_transposed_conv_matches_scatter(k):
  x, w = _rand(17, 2, 4, 3, 2), _rand(18, k, k, 2, 3)
  want = np_transposed_conv2x(x, w)
  got = jax.jit(R.transposed_conv2x)(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------------------
# modulated conv
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("up,demod,k", [(1, True, 3), (2, True, 3), (1, False, 1), (2, False, 3)])
def test_modulated_conv_equals_per_sample_weights(up, demod, k):
  x, w = _rand(4, 3, 5, 5, 4), _rand(5, k, k, 4, 6)
  s = _rand(6, 3, 4) + 1.0
  got = L.modulated_conv2d(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), jnp.asarray(s, jnp.float32),
                           demodulate=demod, up=up)
  want = np_modconv(x, w, s, demodulate=demod, up=up)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_demodulated_weights_have_unit_norm():
  w, s = _rand(7, 3, 3, 8, 5), 3.0 * _rand(8, 4, 8)
  d = np.asarray(L.demod_coefficients(jnp.asarray(w, jnp.float32), jnp.asarray(s, jnp.float32)))
  wb = w[None] * s[:, None, None, :, None] * d[:, None, None, None, :]  # [B,k,k,I,O]
  np.testing.assert_allclose(np.sqrt(np.sum(wb ** 2, axis=(1, 2, 3))), 1.0, rtol=1e-5)


def _set(tree, path, value):
  node = tree
  for p in path[:-1]:
    node = node[p]
  node[path[-1]] = jnp.asarray(value, jnp.float32)


def test_modulated_conv_layer_noise_modes_and_equation():
  layer = L.ModulatedConv(6, up=2, noise_id=11)
  x, w = jnp.asarray(_rand(9, 2, 4, 4, 4), jnp.float32), jnp.asarray(_rand(10, 2, 7), jnp.float32)
  rbg = functools.partial(jax.random.key, impl="rbg")  # threefry compiles slowly on XLA:CPU
  params = jax.tree.map(np.array, jax.jit(layer.init)({"params": rbg(1), "noise": rbg(2)}, x, w))
  assert set(params) == {"params"}
  _set(params, ("params", "noise_strength"), 0.7)
  _set(params, ("params", "bias"), _rand(11, 6))
  apply = jax.jit(layer.apply, static_argnames="noise_mode")
  none = np.asarray(apply(params, x, w, noise_mode="none"))
  # equation: lrelu(modconv(x, W, affine(w)) + bias) * sqrt(2), styles = w @ A / sqrt(w_dim) + 1
  p = params["params"]
  styles = np.asarray(w, np.float64) @ p["affine"]["kernel"] / np.sqrt(7) + p["affine"]["bias"]
  want = np_lrelu(np_modconv(np.asarray(x, np.float64), p["kernel"], styles, up=2) + p["bias"])
  np.testing.assert_allclose(none, want, rtol=1e-4, atol=1e-4)
  c1 = np.asarray(apply(params, x, w, noise_mode="const"))
  c2 = np.asarray(apply(params, x, w, noise_mode="const", rngs={"noise": rbg(5)}))
  np.testing.assert_array_equal(c1, c2)  # pure function of the layer, no rng involved
  assert np.abs(c1 - none).max() > 1e-2
  r1 = np.asarray(apply(params, x, w, noise_mode="random", rngs={"noise": rbg(3)}))
  r2 = np.asarray(apply(params, x, w, noise_mode="random", rngs={"noise": rbg(4)}))
  assert np.abs(r1 - r2).max() > 1e-2 and np.abs(r1 - c1).max() > 1e-2
  with pytest.raises(UserError, match="noise_mode"):
    layer.apply(params, x, w, noise_mode="fixed")


# --------------------------------------------------------------------------------------------------------
# equalized learning rate, activation
# --------------------------------------------------------------------------------------------------------

def test_eq_dense_runtime_scaling_and_init():
  layer = L.EqDense(300, lr_mul=0.01, bias_init=0.5, act="lrelu")
  x = jnp.asarray(_rand(12, 4, 200), jnp.float32)
  params = layer.init(jax.random.key(0, impl="rbg"), x)["params"]
  kernel = np.asarray(params["kernel"])
  assert abs(kernel.std() * 0.01 - 1.0) < 0.02  # stored ~ N(0, 1/lr_mul^2): effective init is He for any lr_mul
  np.testing.assert_allclose(np.asarray(params["bias"]) * 0.01, 0.5, rtol=1e-6)  # effective initial bias
  b = _rand(13, 300)
  out = layer.apply({"params": {"kernel": kernel, "bias": jnp.asarray(b, jnp.float32)}}, x)
  want = np_lrelu(np.asarray(x, np.float64) @ kernel * (0.01 / np.sqrt(200)) + b * 0.01)
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k,down", [(3, 1), (3, 2), (1, 2)])
def test_eq_conv_runtime_scaling_gain_and_clamp(k, down):
  layer = L.EqConv2d(5, k, down=down, act="lrelu", gain=0.5, clamp=0.3)
  x = jnp.asarray(_rand(14, 2, 8, 8, 3), jnp.float32)
  params = layer.init(jax.random.key(0, impl="rbg"), x)["params"]
  b = _rand(15, 5)
  out = layer.apply({"params": {"kernel": params["kernel"], "bias": jnp.asarray(b, jnp.float32)}}, x)
  w = np.asarray(params["kernel"], np.float64) / np.sqrt(k * k * 3)
  want = np.clip(np_lrelu(np_conv_resample(np.asarray(x, np.float64), w, down=down) + b, np.sqrt(2) * 0.5),
                 -0.15, 0.15)
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-4, atol=1e-5)


def test_bias_act_values():
  x = jnp.array([-2.0, 0.0, 3.0])
  np.testing.assert_allclose(np.asarray(L.bias_act(x, jnp.array(1.0), "lrelu")),
                             np.sqrt(2) * np.array([-0.2, 1.0, 4.0]), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(L.bias_act(x, None, "lrelu", clamp=2.0)), [-0.4 * np.sqrt(2), 0, 2.0],
                             rtol=1e-6)
  np.testing.assert_allclose(np.asarray(L.bias_act(x, None, "linear", gain=3.0)), [-6.0, 0.0, 9.0])


# --------------------------------------------------------------------------------------------------------
# minibatch stddev
# --------------------------------------------------------------------------------------------------------

def np_mbstd(x, g, f):
  n, h, w, c = x.shape
  out = np.zeros((n, h, w, f))
  for start in range(0, n, g):  # consecutive groups
    grp = x[start:start + g]
    std = np.sqrt(grp.var(axis=0) + 1e-8)  # [h,w,c]
    for j in range(f):
      out[start:start + g, :, :, j] = std[:, :, j * (c // f):(j + 1) * (c // f)].mean()
  return np.concatenate([x, out], axis=-1)


@pytest.mark.parametrize("g,f", [(4, 1), (2, 2), (8, 1), (16, 3)])
def test_minibatch_stddev_matches_numpy(g, f):
  x = _rand(16, 8, 3, 3, 6) * np.arange(1, 7)  # channel-dependent scale so feature groups differ
  got = L.minibatch_stddev(jnp.asarray(x, jnp.float32), g, f)
  want = np_mbstd(x, min(g, 8), f)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_minibatch_stddev_bad_batch_is_user_error():
  with pytest.raises(UserError, match="does not divide the batch size 6"):
    L.minibatch_stddev(jnp.zeros((6, 4, 4, 8)), 4, 1)
  with pytest.raises(UserError, match="must divide"):
    L.minibatch_stddev(jnp.zeros((4, 4, 4, 8)), 4, 3)


def test_gaussian_noise_is_standard_normal():
  """The Box-Muller noise maps: moments and quantiles of N(0, 1) (z-values of the standard normal), and no
  infinities from u1 -> 0."""
  x = np.asarray(L.gaussian_noise(jax.random.key(3, impl="rbg"), (400_000,)), np.float64)
  assert np.all(np.isfinite(x))
  assert abs(x.mean()) < 0.01 and abs(x.std() - 1.0) < 0.01
  assert abs(np.mean(x ** 3)) < 0.03 and abs(np.mean(x ** 4) - 3.0) < 0.06  # skew 0, kurtosis 3
  probs = np.array([0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
  z = np.array([-2.3263, -1.2816, -0.6745, 0.0, 0.6745, 1.2816, 2.3263])
  np.testing.assert_allclose(np.quantile(x, probs), z, atol=0.02)
