"""StyleGAN2's resampling: the separable FIR filter (upfirdn2d, as stylegan2-ada-pytorch `torch_utils/ops`),
2x up/down-sampling, and the resampling convolution (`conv2d_resample`) on the convolutions of models/conv.py
(derivatives of every order stay on XLA's fast paths). Layout NHWC, kernels HWIO; every conv is a correlation
with its kernel on the (upsampled) grid, as in models/layers.py.
"""


import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxface.models import conv as conv_lib


FIR_TAPS = (1.0, 3.0, 3.0, 1.0)  # StyleGAN2's resampling filter, applied separably (outer product = 4x4)


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


def transposed_conv2x(x, w):
  """Stride-2 transposed conv with correlation semantics: zero-insert x (interior), pad by k-1, correlate with w.
  Output [B, 2H+k-2, 2W+k-2, O]: the adjoint of a stride-2 VALID conv with the flipped, in/out-swapped kernel, so
  its derivatives are the fast forms of models/conv.py (XLA's own weight gradient of it takes a slow loop on CPU)."""
  k = w.shape[0]
  h, wd = x.shape[1:3]
  return conv_lib.conv_transpose(x, jnp.flip(w, (0, 1)).swapaxes(2, 3), 2, ((0, 0), (0, 0)),
                                 (2 * h + k - 2, 2 * wd + k - 2))


def conv2d_resample(x, w, up=1, down=1, f=None):
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
    return upfirdn2d(transposed_conv2x(x, w), f, padding=(p0, p1, p0, p1), gain=up * up)
  if down > 1:
    p0 = pad + (fw - down + 1) // 2
    p1 = pad + (fw - down) // 2
    if k == 1:
      x = upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
      return conv_lib.conv(x, w)
    x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
    return conv_lib.conv(x, w, down)
  return conv_lib.conv(x, w, 1, ((pad, pad), (pad, pad)))
