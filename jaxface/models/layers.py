"""StyleGAN2 building blocks: equalized-lr layers, modulated conv, noise, ToRGB, minibatch-stddev (the
resampling they use is models/resample.py).

Equations follow StyleGAN2 config-F (Karras et al. 2020) as written out in stylegan2-ada-pytorch
`training/networks.py`; the layout here is NHWC with HWIO kernels, the convolutions of models/conv.py throughout.

Precision: parameters are float32; activations run in the module's `dtype` (bfloat16 on GPU); weights are
cast at use. Small per-sample quantities that set the scale of everything downstream (styles, demodulation
coefficients, minibatch statistics, the RGB skip path) are computed in float32.

Kernel semantics: every conv here is a correlation with its HWIO kernel on the (upsampled) pixel grid, also
the stride-2 up-conv. stylegan2-ada-pytorch's `conv0_up` weights are flipped relative to this (it calls
`conv_transpose2d` without a flip), so a weight converter must flip those kernels spatially.
"""

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxface.errors import UserError
from jaxface.models.resample import conv2d_resample

LRELU_SLOPE = 0.2
LRELU_GAIN = float(np.sqrt(2.0))  # keeps the second moment of He-initialized activations constant


def bias_act(x, b=None, act="linear", gain=None, clamp=None):
  """x + b, then activation, then `gain` (default sqrt(2) for lrelu, 1 for linear), then clip to +-clamp."""
  if b is not None:
    x = x + b.astype(x.dtype)
  if act == "lrelu":
    x = jnp.where(x >= 0, x, x * LRELU_SLOPE)
    gain = LRELU_GAIN if gain is None else gain
  elif act != "linear":
    raise ValueError(f"unknown activation {act!r}")
  if gain is not None and gain != 1.0:
    x = x * gain
  if clamp is not None:
    x = jnp.clip(x, -clamp, clamp)
  return x


# ---------------------------------------------------------------------------------------------------------
# Equalized learning rate layers
# ---------------------------------------------------------------------------------------------------------

class EqDense(nn.Module):
  """Dense layer with equalized learning rate.

  Stored kernel ~ N(0, 1/lr_mul^2); used as kernel * lr_mul / sqrt(fan_in), bias as bias * lr_mul. The
  effective init is He for any lr_mul while Adam's step on the effective weight shrinks by lr_mul
  (the mapping network uses lr_mul = 0.01). `bias_init` is the effective initial bias.
  """
  features: int
  use_bias: bool = True
  bias_init: float = 0.0
  lr_mul: float = 1.0
  act: str = "linear"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    kernel = self.param("kernel", nn.initializers.normal(1.0 / self.lr_mul), (fan_in, self.features), jnp.float32)
    w = (kernel * (self.lr_mul / np.sqrt(fan_in))).astype(self.dtype)
    y = jnp.matmul(x.astype(self.dtype), w)
    b = None
    if self.use_bias:
      b = self.param("bias", nn.initializers.constant(self.bias_init / self.lr_mul), (self.features,), jnp.float32)
      b = b * self.lr_mul
    return bias_act(y, b, self.act)


class EqConv2d(nn.Module):
  """Conv layer with equalized learning rate (kernel ~ N(0,1), scaled by 1/sqrt(k*k*in) at use).

  `gain` multiplies after the activation (the residual D uses sqrt(0.5)); `clamp` clips the output.
  """
  features: int
  kernel_size: int = 3
  down: int = 1
  use_bias: bool = True
  act: str = "linear"
  gain: float = 1.0
  clamp: Optional[float] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, cin = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", nn.initializers.normal(1.0), (k, k, cin, self.features), jnp.float32)
    w = (kernel * (1.0 / np.sqrt(k * k * cin))).astype(self.dtype)
    y = conv2d_resample(x.astype(self.dtype), w, down=self.down)
    b = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32) if self.use_bias else None
    act_gain = (LRELU_GAIN if self.act == "lrelu" else 1.0) * self.gain
    clamp = None if self.clamp is None else self.clamp * self.gain
    return bias_act(y, b, self.act, act_gain, clamp)


# ---------------------------------------------------------------------------------------------------------
# Modulated convolution
# ---------------------------------------------------------------------------------------------------------

def demod_coefficients(weight, styles, eps=1e-8):
  """Per-sample output scales 1/||w * s||: [B, O] float32, from weight [k,k,I,O] and styles [B,I].

  ||W_b[:, :, :, o]||^2 = sum_i s_bi^2 * sum_{kh,kw} W[kh,kw,i,o]^2, so this is one small matmul.
  """
  wsq = jnp.sum(jnp.square(weight.astype(jnp.float32)), axis=(0, 1))  # [I, O]
  return lax.rsqrt(jnp.square(styles.astype(jnp.float32)) @ wsq + eps)


def modulated_conv2d(x, weight, styles, demodulate=True, up=1, dtype=None):
  """StyleGAN2 modulated conv, computed the non-fused way.

  Equal to convolving each sample with its own weight W_b[...,i,o] = W[...,i,o] * s_bi * d_bo (d = demod
  coefficient), but runs ONE ordinary batched conv with the shared W: scale the input channels by s, convolve,
  scale the output channels by d. No grouped convs (slow backward in XLA), no per-sample weights in memory.
  x: [B,H,W,I]; weight: [k,k,I,O] float32 (raw, un-normalized); styles: [B,I].
  """
  dtype = x.dtype if dtype is None else dtype
  x = x.astype(dtype) * styles[:, None, None, :].astype(dtype)
  x = conv2d_resample(x, weight.astype(dtype), up=up)
  if demodulate:
    x = x * demod_coefficients(weight, styles)[:, None, None, :].astype(dtype)
  return x


NOISE_MODES = ("random", "const", "none", "given")


def gaussian_noise(key, shape, dtype=jnp.float32):
  """N(0, 1) samples by the Box-Muller transform, sqrt(-2 ln u1) * cos(2 pi u2).

  Not jax.random.normal, for speed on CPU: its erf_inv polynomial is made of cheap operations, so XLA:CPU fuses it
  through the channel broadcast into every [B,H,W,C] consumer of a [B,H,W,1] noise map (forward and backward) and
  evaluates it C times per pixel, a quarter of a 64x64x64 layer's training step. Here the map is a product of two
  transcendental maps, which XLA computes once (it does not duplicate expensive operations into consumers that
  reuse their elements), leaving one multiplication per element downstream."""
  k1, k2 = jax.random.split(key)
  u1 = jax.random.uniform(k1, shape, jnp.float32, minval=jnp.finfo(jnp.float32).tiny, maxval=1.0)
  u2 = jax.random.uniform(k2, shape, jnp.float32)
  return (jnp.sqrt(-2.0 * jnp.log(u1)) * jnp.cos(2.0 * np.pi * u2)).astype(dtype)


@functools.lru_cache(maxsize=64)
def const_noise(noise_id, h, w):
  """The fixed noise map of layer `noise_id`: N(0,1) [h, w, 1] from numpy's PCG64 seeded by the id. A constant
  of the program (identical on every backend, no PRNG in the compiled graph)."""
  noise = np.random.default_rng(noise_id).standard_normal((h, w, 1)).astype(np.float32)
  noise.setflags(write=False)
  return noise


class ModulatedConv(nn.Module):
  """StyleGAN2 synthesis layer: affine(w) -> modulated, demodulated conv -> + noise -> bias, lrelu.

  noise_mode "random" draws per-pixel N(0,1) from the "noise" rng; "const" uses a fixed map that is a pure
  function of `noise_id` (not a parameter, the same on every call); "none" adds nothing; "given" reads per-sample
  maps [B, H, W, 1] from the "noise" variable collection (created from the const maps when applied with
  mutable=["noise"]), so a caller can optimize them (real-image embedding). The noise is scaled by a learned
  scalar (init 0).
  """
  features: int
  kernel_size: int = 3
  up: int = 1
  noise_id: int = 0
  clamp: Optional[float] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, w, noise_mode="random"):
    cin, k = x.shape[-1], self.kernel_size
    styles = EqDense(cin, bias_init=1.0, name="affine")(w)  # float32: tiny, and sets every channel's scale
    weight = self.param("kernel", nn.initializers.normal(1.0), (k, k, cin, self.features), jnp.float32)
    x = modulated_conv2d(x, weight, styles, demodulate=True, up=self.up, dtype=self.dtype)
    strength = self.param("noise_strength", nn.initializers.zeros, (), jnp.float32)
    b, h, wd = x.shape[:3]
    if noise_mode == "random":
      noise = gaussian_noise(self.make_rng("noise"), (b, h, wd, 1), self.dtype)
      x = x + noise * strength.astype(self.dtype)
    elif noise_mode == "const":
      x = x + (const_noise(self.noise_id, h, wd) * strength).astype(self.dtype)
    elif noise_mode == "given":  # per-sample maps in the "noise" collection (optimized by embedding)
      maps = self.variable("noise", "map", lambda: jnp.broadcast_to(const_noise(self.noise_id, h, wd), (b, h, wd, 1)))
      x = x + (maps.value * strength).astype(self.dtype)
    elif noise_mode != "none":
      raise UserError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return bias_act(x, bias, "lrelu", clamp=self.clamp)


class ToRGB(nn.Module):
  """Modulated 1x1 conv to image channels, no demodulation, linear. Runs in float32 (3 output channels: cheap,
  and it is what the image is made of)."""
  features: int = 3
  clamp: Optional[float] = None

  @nn.compact
  def __call__(self, x, w):
    cin = x.shape[-1]
    styles = EqDense(cin, bias_init=1.0, name="affine")(w) * (1.0 / np.sqrt(cin))  # equalized-lr gain
    weight = self.param("kernel", nn.initializers.normal(1.0), (1, 1, cin, self.features), jnp.float32)
    y = modulated_conv2d(x, weight, styles, demodulate=False, dtype=jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return bias_act(y, bias, "linear", clamp=self.clamp)


def minibatch_stddev(x, group_size=4, num_features=1):
  """Appends `num_features` channels: the stddev over groups of samples, averaged over pixels and channels.

  Groups are CONSECUTIVE samples (sample i is in group i // G), unlike stylegan2-ada-pytorch (i % n). Same
  statistics, but with the batch sharded over devices a group never spans devices when the per-device batch
  is a multiple of G, so no cross-device traffic. Statistics in float32. x: [N,H,W,C] -> [N,H,W,C+F].
  """
  n, h, w, c = x.shape
  g = min(group_size, n)
  if n % g:
    raise UserError(f"minibatch-stddev group size {g} does not divide the batch size {n}; use a batch size "
                    f"that is a multiple of {g} or set mbstd_group_size to a divisor of it")
  if c % num_features:
    raise UserError(f"mbstd_num_features={num_features} must divide the {c} channels at 4x4")
  y = x.astype(jnp.float32).reshape(n // g, g, h, w, num_features, c // num_features)
  y = y - jnp.mean(y, axis=1, keepdims=True)
  y = jnp.sqrt(jnp.mean(jnp.square(y), axis=1) + 1e-8)  # [n/G, H, W, F, c]
  y = jnp.mean(y, axis=(1, 2, 4))  # [n/G, F]
  y = jnp.broadcast_to(y[:, None, None, None, :], (n // g, g, h, w, num_features)).reshape(n, h, w, num_features)
  return jnp.concatenate([x, y.astype(x.dtype)], axis=-1)
