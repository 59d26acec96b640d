"""StyleGAN2 building blocks: equalized-lr layers, upfirdn2d, modulated conv, minibatch-stddev.

Equations follow StyleGAN2 config-F (Karras et al. 2020) as written out in stylegan2-ada-pytorch
`training/networks.py`; the layout here is NHWC with HWIO kernels, `lax.conv_general_dilated` throughout.

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

FIR_TAPS = (1.0, 3.0, 3.0, 1.0)  # StyleGAN2's resampling filter, applied separably (outer product = 4x4)
LRELU_SLOPE = 0.2
LRELU_GAIN = float(np.sqrt(2.0))  # keeps the second moment of He-initialized activations constant
_DN = ("NHWC", "HWIO", "NHWC")


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
# upfirdn2d: zero-insert upsample, pad (negative crops), FIR filter, downsample -- separable, NHWC
# ---------------------------------------------------------------------------------------------------------

def setup_filter(taps=FIR_TAPS):
  """1-D FIR taps normalized to sum 1 (the 2-D filter is their outer product)."""
  f = np.asarray(taps, np.float64)
  if f.ndim != 1 or f.size == 0:
    raise ValueError("FIR taps must be a non-empty 1-D sequence")
  return f / f.sum()


def _parse_padding(padding):
  if isinstance(padding, int):
    return padding, padding, padding, padding
  padding = tuple(int(p) for p in padding)
  if len(padding) == 2:
    return padding[0], padding[0], padding[1], padding[1]
  if len(padding) == 4:
    return padding
  raise ValueError(f"padding must be an int, (px, py) or (px0, px1, py0, py1); got {padding}")


def _fir_axis_polyphase(x, axis, taps, up, pad0, pad1):
  """Upsample by `up` and filter one axis without materializing the zero-inserted signal: output phase r
  (n = up * a + r) only sees the taps k = (pad0 - r) mod up, so each phase is a short sum of slices of x;
  the phases are then interleaved. ~`up` times fewer multiply-adds than filtering the zero-inserted signal."""
  length, kk = x.shape[axis], len(taps)
  n = length * up + pad0 + pad1 - kk + 1
  if n <= 0:
    raise ValueError(f"upfirdn2d output would be empty along axis {axis} (input {x.shape})")
  per_phase = -(-n // up)
  phase_taps = [[(k, (r + k - pad0) // up) for k in range(kk) if (r + k - pad0) % up == 0] for r in range(up)]
  offsets = [d for pt in phase_taps for _, d in pt] or [0]
  lo = max(0, -min(offsets))
  hi = max(0, per_phase + max(offsets) - length)
  cfg = [(0, 0)] * x.ndim
  cfg[axis] = (lo, hi)
  xp = jnp.pad(x, cfg)
  phases = []
  for pt in phase_taps:
    acc = jnp.zeros(x.shape[:axis] + (per_phase,) + x.shape[axis + 1:], jnp.float32)
    for k, d in pt:
      if taps[k] != 0.0:
        acc = acc + lax.slice_in_dim(xp, d + lo, d + lo + per_phase, axis=axis).astype(jnp.float32) * taps[k]
    phases.append(acc)
  y = jnp.stack(phases, axis=axis + 1)
  y = y.reshape(x.shape[:axis] + (per_phase * up,) + x.shape[axis + 1:])
  return lax.slice_in_dim(y, 0, n, axis=axis).astype(x.dtype)


def _fir_axis(x, axis, taps, up, down, pad0, pad1):
  """Upsample/pad/filter/downsample one spatial axis as a sum of strided slices (fuses into one loop)."""
  if up > 1 and down == 1:
    return _fir_axis_polyphase(x, axis, taps, up, pad0, pad1)
  cfg = [(0, 0, 0)] * x.ndim
  cfg[axis] = (pad0, pad1 + up - 1, up - 1)  # interior = zero insertion; the tail zero keeps length L*up
  xp = lax.pad(x, jnp.zeros((), x.dtype), cfg)
  length = xp.shape[axis]
  n = (length - len(taps)) // down + 1
  if n <= 0:
    raise ValueError(f"upfirdn2d output would be empty along axis {axis} (input {x.shape})")
  acc = None
  for k, t in enumerate(taps):
    if t == 0.0:
      continue
    term = lax.slice_in_dim(xp, k, k + (n - 1) * down + 1, stride=down, axis=axis).astype(jnp.float32) * t
    acc = term if acc is None else acc + term
  return acc.astype(x.dtype)


def upfirdn2d(x, f=None, up=1, down=1, padding=0, gain=1.0, flip_filter=False):
  """Upsample by `up` (zero insertion), pad, convolve with the separable FIR `f`, keep every `down`-th pixel.

  x: [N, H, W, C]. f: 1-D taps (default normalized [1,3,3,1]). padding: int, (px, py) or (px0, px1, py0, py1);
  negative values crop. gain: total gain (sqrt(gain) per axis). Output size per axis:
  (L * up + p0 + p1 - len(f)) // down + 1. Convolution (flipped taps) unless `flip_filter`.
  """
  f = setup_filter() if f is None else np.asarray(f, np.float64)
  px0, px1, py0, py1 = _parse_padding(padding)
  taps = f if flip_filter else f[::-1]
  taps = [float(t) for t in taps * np.sqrt(gain)]
  x = _fir_axis(x, 2, taps, up, down, px0, px1)
  return _fir_axis(x, 1, taps, up, down, py0, py1)


def upsample2d(x, f=None, up=2):
  """StyleGAN2 upsampling: size * up, FIR-filtered, gain up^2 to keep the mean intensity."""
  fw = len(setup_filter() if f is None else f)
  p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
  return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def downsample2d(x, f=None, down=2):
  """StyleGAN2 downsampling: FIR-filtered, size // down."""
  fw = len(setup_filter() if f is None else f)
  p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
  return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


# ---------------------------------------------------------------------------------------------------------
# Convolution with resampling (shared weight; batched; NHWC/HWIO)
# ---------------------------------------------------------------------------------------------------------

UP_IMPLS = ("transposed", "phases")


def default_up_impl():
  """XLA:CPU runs the weight gradient of an input-dilated conv through a slow generic loop (~60x slower than
  a plain conv at 32x32x128), so CPU uses the polyphase form; GPU/TPU lower the transposed conv to their
  native backward-data kernels."""
  return "phases" if jax.default_backend() == "cpu" else "transposed"


def _phase_taps(k):
  """Stride-2 transposed conv, output phase p in {0,1}: [(tap j, input offset d)] with out[2a+p] += x[a+d] w[j].
  Within a phase the taps step by 2 and the offsets by 1, so each phase is an ordinary conv."""
  return {p: [(j, (p + j - (k - 1)) // 2) for j in range(k) if (p + j - (k - 1)) % 2 == 0] for p in (0, 1)}


def transposed_conv2x(x, w, impl=None):
  """Stride-2 transposed conv with correlation semantics: zero-insert x (interior), pad by k-1, correlate with
  w. Output [B, 2H+k-2, 2W+k-2, O]. Both impls do the same 9 MACs per input pixel (3x3).

  impl "transposed": one input-dilated conv. impl "phases": the four output phases (row/column parity) as four
  ordinary VALID convs at input resolution with 2x2, 2x1, 1x2 and 1x1 sub-kernels of w, interleaved after.
  Inputs are padded explicitly: XLA:CPU also sends resized-output weight gradients to its slow loop.
  """
  k, _, cin, cout = w.shape
  impl = impl or default_up_impl()
  if impl == "transposed":
    return lax.conv_general_dilated(x, w, (1, 1), [(k - 1, k - 1)] * 2, lhs_dilation=(2, 2), dimension_numbers=_DN)
  if impl != "phases":
    raise ValueError(f"up-conv impl must be one of {UP_IMPLS}, got {impl!r}")
  b, h, wd, _ = x.shape
  taps = _phase_taps(k)
  lh, lw = 2 * (h - 1) + k, 2 * (wd - 1) + k  # transposed-conv output size
  nh, nw = (lh + 1) // 2, (lw + 1) // 2  # outputs per phase
  rows = []
  for py in (0, 1):
    cols = []
    for px in (0, 1):
      ty, tx = taps[py], taps[px]
      if not ty or not tx:  # k = 1: odd phases get no taps
        cols.append(jnp.zeros((b, nh, nw, cout), x.dtype))
        continue
      kernel = w[np.array([j for j, _ in ty])][:, np.array([j for j, _ in tx])]
      (dy, dx), (th, tw) = (ty[0][1], tx[0][1]), kernel.shape[:2]
      xp = jnp.pad(x, ((0, 0), (-dy, nh + th - 1 - h + dy), (-dx, nw + tw - 1 - wd + dx), (0, 0)))
      cols.append(lax.conv_general_dilated(xp, kernel, (1, 1), "VALID", dimension_numbers=_DN))
    rows.append(jnp.stack(cols, axis=3))  # [B, nh, nw, 2 (px), O]
  y = jnp.stack(rows, axis=2).reshape(b, 2 * nh, 2 * nw, cout)  # [B, nh, 2 (py), nw, 2 (px), O] -> interleaved
  return y[:, :lh, :lw]


def conv2d_resample(x, w, up=1, down=1, f=None, up_impl=None):
  """Same-size 3x3/1x1 conv with optional x2 up/downsampling, matching StyleGAN2's `conv2d_resample`.

  up=2: a stride-2 transposed conv (a quarter of the MACs of conv-after-upsample; see `transposed_conv2x`)
  followed by the FIR with gain 4, cropped to 2H. down=2: FIR blur, then a stride-2 conv (1x1 kernels:
  FIR-downsample first).
  """
  if (up, down) not in ((1, 1), (2, 1), (1, 2)):
    raise ValueError(f"conv2d_resample supports up=2 or down=2 (not both), got up={up}, down={down}")
  kh, kw = w.shape[:2]
  if kh != kw or kh % 2 == 0:
    raise ValueError("conv2d_resample expects square, odd-sized kernels")
  k = kh
  pad = k // 2
  fw = len(setup_filter() if f is None else f)
  if up > 1:
    p0 = pad + (fw + up - 1) // 2 - (k - 1)
    p1 = pad + (fw - up) // 2 - (k - up)
    return upfirdn2d(transposed_conv2x(x, w, up_impl), f, padding=(p0, p1, p0, p1), gain=up * up)
  if down > 1:
    p0 = pad + (fw - down + 1) // 2
    p1 = pad + (fw - down) // 2
    if k == 1:
      x = upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
      return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=_DN)
    x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
    return lax.conv_general_dilated(x, w, (down, down), "VALID", dimension_numbers=_DN)
  return lax.conv_general_dilated(x, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=_DN)


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


def modulated_conv2d(x, weight, styles, demodulate=True, up=1, dtype=None, up_impl=None):
  """StyleGAN2 modulated conv, computed the non-fused way.

  Equal to convolving each sample with its own weight W_b[...,i,o] = W[...,i,o] * s_bi * d_bo (d = demod
  coefficient), but runs ONE ordinary batched conv with the shared W: scale the input channels by s, convolve,
  scale the output channels by d. No grouped convs (slow backward in XLA), no per-sample weights in memory.
  x: [B,H,W,I]; weight: [k,k,I,O] float32 (raw, un-normalized); styles: [B,I].
  """
  dtype = x.dtype if dtype is None else dtype
  x = x.astype(dtype) * styles[:, None, None, :].astype(dtype)
  x = conv2d_resample(x, weight.astype(dtype), up=up, up_impl=up_impl)
  if demodulate:
    x = x * demod_coefficients(weight, styles)[:, None, None, :].astype(dtype)
  return x


NOISE_MODES = ("random", "const", "none", "given")


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
  up_impl: Optional[str] = None  # "transposed" | "phases" | None = per backend (see default_up_impl)

  @nn.compact
  def __call__(self, x, w, noise_mode="random"):
    cin, k = x.shape[-1], self.kernel_size
    styles = EqDense(cin, bias_init=1.0, name="affine")(w)  # float32: tiny, and sets every channel's scale
    weight = self.param("kernel", nn.initializers.normal(1.0), (k, k, cin, self.features), jnp.float32)
    x = modulated_conv2d(x, weight, styles, demodulate=True, up=self.up, dtype=self.dtype, up_impl=self.up_impl)
    strength = self.param("noise_strength", nn.initializers.zeros, (), jnp.float32)
    b, h, wd = x.shape[:3]
    if noise_mode == "random":
      noise = jax.random.normal(self.make_rng("noise"), (b, h, wd, 1), self.dtype)
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
