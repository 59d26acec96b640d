"""StyleGAN2 config-F: mapping, skip-architecture synthesis, residual discriminator (NHWC).

Layer names mirror stylegan2-ada-pytorch (`fc0`, `b{res}/conv0|conv1|torgb|const`, `b{res}/fromrgb|skip`,
`b4/conv|fc|out`) so that a weight converter is a table. Only the "params" collection exists: w_avg, the
path-length mean and EMA weights belong to the trainer's state, and const noise is a pure function of the layer.
DiscoFaceGAN reuses Mapping with `normalize_z=False` (its input is the factor vector lambda || eps).
"""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxface.errors import UserError
from jaxface.models.layers import EqConv2d, EqDense, ModulatedConv, NOISE_MODES, ToRGB, minibatch_stddev
from jaxface.models.resample import upsample2d

MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024


def _check_resolution(resolution, channel_base, channel_max, what):
  try:
    r = int(resolution)
  except (TypeError, ValueError):
    r = -1
  if r != resolution or r < MIN_RESOLUTION or r > MAX_RESOLUTION or r & (r - 1):
    raise UserError(f"{what}: resolution must be a power of two in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], "
                    f"got {resolution!r}; resize or crop your data to 8, 16, ..., 1024 and set resolution to match")
  if channel_max < 1 or channel_base < r:
    raise UserError(f"{what}: channel_base={channel_base} and channel_max={channel_max} give layers with zero "
                    f"channels at {r}x{r} (width = min(channel_base // res, channel_max)); use channel_base >= "
                    f"resolution and channel_max >= 1")


def num_ws_for(resolution):
  """Number of style vectors the synthesis consumes: 2 * log2(resolution) - 2 (one per conv + the last ToRGB)."""
  return 2 * int(np.log2(resolution)) - 2


def _block_resolutions(resolution):
  return [2 ** i for i in range(2, int(np.log2(resolution)) + 1)]


def channels_per_resolution(resolutions, channel_base, channel_max):
  """ch(res) = min(channel_base // res, channel_max) (stylegan2-ada convention)."""
  return {r: min(channel_base // r, channel_max) for r in resolutions}


def normalize_2nd_moment(x, axis=-1, eps=1e-8):
  return x * jnp.reciprocal(jnp.sqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps))


# ---------------------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------------------

class Mapping(nn.Module):
  """z [B, z_dim] -> w [B, w_dim] float32: optional 2nd-moment normalization, then `num_layers` lrelu EqDense
  layers with lr_mul 0.01 (the W space moves slowly)."""
  z_dim: int
  w_dim: int = 512
  num_layers: int = 8
  lr_mul: float = 0.01
  normalize_z: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z):
    if z.ndim != 2 or z.shape[-1] != self.z_dim:
      raise UserError(f"Mapping expects latents of shape [batch, {self.z_dim}], got {tuple(z.shape)}")
    x = z.astype(jnp.float32)
    if self.normalize_z:
      x = normalize_2nd_moment(x)
    for i in range(self.num_layers):
      x = EqDense(self.w_dim, lr_mul=self.lr_mul, act="lrelu", dtype=self.dtype, name=f"fc{i}")(x)
    return x.astype(jnp.float32)


class SynthesisBlock(nn.Module):
  """One resolution of the skip generator: [const | up-conv0] -> conv1 -> ToRGB added to the upsampled image."""
  features: int
  resolution: int
  img_channels: int = 3
  clamp: Optional[float] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, img, ws, noise_mode):
    # ws: [B, n, w_dim] with n = number of convs + 1; the ToRGB shares its w with the next block's conv0.
    base = 2 * int(np.log2(self.resolution))  # distinct const-noise ids per layer: 4, 5 | 6, 7 | ...
    i = 0
    if x is None:
      const = self.param("const", nn.initializers.normal(1.0), (4, 4, self.features), jnp.float32)
      x = jnp.broadcast_to(const.astype(self.dtype), (ws.shape[0],) + const.shape)
    else:
      x = ModulatedConv(self.features, up=2, noise_id=base, clamp=self.clamp, dtype=self.dtype,
                        name="conv0")(x, ws[:, i], noise_mode)
      i += 1
    x = ModulatedConv(self.features, noise_id=base + 1, clamp=self.clamp, dtype=self.dtype,
                      name="conv1")(x, ws[:, i], noise_mode)
    i += 1
    y = ToRGB(self.img_channels, clamp=self.clamp, name="torgb")(x, ws[:, i])
    img = y if img is None else upsample2d(img) + y
    return x, img


class Synthesis(nn.Module):
  """ws [B, num_ws, w_dim] -> image [B, R, R, img_channels] float32 (skip architecture, config-F)."""
  resolution: int
  w_dim: int = 512
  channel_base: int = 32768
  channel_max: int = 512
  img_channels: int = 3
  conv_clamp: Optional[float] = None  # clip conv outputs (StyleGAN2-ADA uses 256 with fp16); None = off
  dtype: Any = jnp.float32

  def __post_init__(self):
    _check_resolution(self.resolution, self.channel_base, self.channel_max, "Synthesis")
    super().__post_init__()

  @property
  def num_ws(self):
    return num_ws_for(self.resolution)

  @nn.compact
  def __call__(self, ws, noise_mode="random"):
    if noise_mode not in NOISE_MODES:
      raise UserError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
      raise UserError(f"Synthesis at {self.resolution}x{self.resolution} expects ws of shape "
                      f"[batch, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
    ws = ws.astype(jnp.float32)
    resolutions = _block_resolutions(self.resolution)
    channels = channels_per_resolution(resolutions, self.channel_base, self.channel_max)
    x = img = None
    w_idx = 0
    for res in resolutions:
      n_conv = 1 if res == 4 else 2
      x, img = SynthesisBlock(channels[res], res, self.img_channels, self.conv_clamp, self.dtype,
                              name=f"b{res}")(x, img, ws[:, w_idx:w_idx + n_conv + 1], noise_mode)
      w_idx += n_conv
    return img.astype(jnp.float32)


class Generator(nn.Module):
  """Mapping + Synthesis. `map` and `synthesize` are callable via `apply(..., method="map")` for style mixing,
  truncation and path-length regularization in the trainer."""
  z_dim: int = 512
  w_dim: int = 512
  resolution: int = 256
  mapping_layers: int = 8
  mapping_lr_mul: float = 0.01
  normalize_z: bool = True
  channel_base: int = 32768
  channel_max: int = 512
  img_channels: int = 3
  dtype: Any = jnp.float32
  mapping_dtype: Any = jnp.float32  # the mapping is <1% of the FLOPs; float32 keeps w (and w_avg) exact
  conv_clamp: Optional[float] = None

  def __post_init__(self):
    _check_resolution(self.resolution, self.channel_base, self.channel_max, "Generator")
    super().__post_init__()

  def setup(self):
    self.mapping = Mapping(self.z_dim, self.w_dim, self.mapping_layers, self.mapping_lr_mul, self.normalize_z,
                           self.mapping_dtype)
    self.synthesis = Synthesis(self.resolution, self.w_dim, self.channel_base, self.channel_max,
                               self.img_channels, self.conv_clamp, self.dtype)

  @property
  def num_ws(self):
    return num_ws_for(self.resolution)

  def map(self, z):
    return self.mapping(z)

  def synthesize(self, ws, noise_mode="random"):
    return self.synthesis(ws, noise_mode)

  def __call__(self, z, noise_mode="random"):
    w = self.mapping(z)
    ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], self.num_ws, w.shape[-1]))
    return self.synthesis(ws, noise_mode)


def truncate(w, w_avg, psi, cutoff=None):
  """Truncation trick: w_avg + psi * (w - w_avg), on the first `cutoff` style layers only when given.

  w: [B, num_ws, w_dim] or [B, w_dim]; w_avg: [w_dim]. psi = 1 returns w unchanged.
  """
  w_avg = jnp.asarray(w_avg, w.dtype)
  out = w_avg + psi * (w - w_avg)
  if cutoff is None:
    return out
  if w.ndim != 3:
    raise UserError(f"truncation cutoff={cutoff} needs per-layer latents [batch, num_ws, w_dim], got shape "
                    f"{tuple(w.shape)}; broadcast w to num_ws layers first or pass cutoff=None")
  layer = jnp.arange(w.shape[1])[None, :, None]
  return jnp.where(layer < cutoff, out, w)


# ---------------------------------------------------------------------------------------------------------
# Discriminator
# ---------------------------------------------------------------------------------------------------------

class DiscriminatorBlock(nn.Module):
  """Residual block: (fromrgb) -> conv0 3x3 -> conv1 3x3 down, plus a 1x1 down skip; both branches * sqrt(.5)."""
  tmp_features: int
  out_features: int
  first: bool = False
  clamp: Optional[float] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.first:
      x = EqConv2d(self.tmp_features, 1, act="lrelu", clamp=self.clamp, dtype=self.dtype, name="fromrgb")(x)
    g = float(np.sqrt(0.5))
    y = EqConv2d(self.out_features, 1, down=2, use_bias=False, gain=g, dtype=self.dtype, name="skip")(x)
    x = EqConv2d(self.tmp_features, 3, act="lrelu", clamp=self.clamp, dtype=self.dtype, name="conv0")(x)
    x = EqConv2d(self.out_features, 3, down=2, act="lrelu", gain=g, clamp=self.clamp, dtype=self.dtype,
                 name="conv1")(x)
    return y + x


class Discriminator(nn.Module):
  """img [B, R, R, C] -> logits [B] float32 (residual architecture, config-F)."""
  resolution: int
  channel_base: int = 32768
  channel_max: int = 512
  img_channels: int = 3
  mbstd_group_size: int = 4
  mbstd_num_features: int = 1
  conv_clamp: Optional[float] = None
  dtype: Any = jnp.float32

  def __post_init__(self):
    _check_resolution(self.resolution, self.channel_base, self.channel_max, "Discriminator")
    super().__post_init__()

  @nn.compact
  def __call__(self, img):
    r = self.resolution
    if img.ndim != 4 or img.shape[1:] != (r, r, self.img_channels):
      raise UserError(f"Discriminator expects images of shape [batch, {r}, {r}, {self.img_channels}] (NHWC), "
                      f"got {tuple(img.shape)}")
    resolutions = _block_resolutions(r)[::-1]  # R, R/2, ..., 4
    channels = channels_per_resolution(resolutions, self.channel_base, self.channel_max)
    x = img.astype(self.dtype)
    for res in resolutions[:-1]:
      x = DiscriminatorBlock(channels[res], channels[res // 2], first=res == r, clamp=self.conv_clamp,
                             dtype=self.dtype, name=f"b{res}")(x)
    return DiscriminatorEpilogue(channels[4], self.mbstd_group_size, self.mbstd_num_features, self.conv_clamp,
                                 self.dtype, name="b4")(x)


class DiscriminatorEpilogue(nn.Module):
  """4x4 head: minibatch-stddev -> conv 3x3 -> dense -> dense to one logit (dense layers in float32)."""
  features: int
  mbstd_group_size: int = 4
  mbstd_num_features: int = 1
  clamp: Optional[float] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.mbstd_num_features > 0:
      x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_features)
    x = EqConv2d(self.features, 3, act="lrelu", clamp=self.clamp, dtype=self.dtype, name="conv")(x)
    x = x.astype(jnp.float32).reshape(x.shape[0], -1)  # HWC flatten (a PyTorch converter must permute CHW)
    x = EqDense(self.features, act="lrelu", name="fc")(x)
    return EqDense(1, name="out")(x)[:, 0]
