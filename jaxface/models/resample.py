"""StyleGAN2's resampling: the separable FIR filter (upfirdn2d, as stylegan2-ada-pytorch `torch_utils/ops`),
2x up/down-sampling, and the resampling convolution (`conv2d_resample`), with two equivalent implementations
of the stride-2 up-conv (a transposed conv, or four phase convs). Layout NHWC, kernels HWIO; every conv is a
correlation with its kernel on the (upsampled) grid, as in models/layers.py.
"""


import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


CONV_LAYOUT = ("NHWC", "HWIO", "NHWC")  # lax.conv_general_dilated dimension numbers
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
    return lax.conv_general_dilated(x, w, (1, 1), [(k - 1, k - 1)] * 2, lhs_dilation=(2, 2),
                                    dimension_numbers=CONV_LAYOUT)
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
      cols.append(lax.conv_general_dilated(xp, kernel, (1, 1), "VALID", dimension_numbers=CONV_LAYOUT))
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
      return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=CONV_LAYOUT)
    x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
    return lax.conv_general_dilated(x, w, (down, down), "VALID", dimension_numbers=CONV_LAYOUT)
  return lax.conv_general_dilated(x, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=CONV_LAYOUT)
