"""SofGAN's texture branch: the semantic instance-wise (SIW) StyleGAN2 generator (Chen et al. 2022), NHWC.

What differs from StyleGAN2:
  - input: a 17-class one-hot label map (at `seg_res`, 128 as released), bilinearly resized to 32x32 and
    encoded by 3 StyleGAN2-D residual blocks (17 -> 32 -> 64 -> 128 channels, 32 -> 4 pixels). The result
    replaces the learned constant.
  - SPADE-like modulation after the activation of the up-convs at `spade_resolutions` (64/128/256 released):
    x * (1 + gamma) + beta, gamma/beta from plain 3x3 convs of the label map resized to the layer (no
    normalisation before it, unlike SPADE).
  - two styles per image: every modulated conv (StyledConv and ToRGB) runs once per style, and the two outputs
    are blended by a soft 2-channel region mask (bilinearly resized, align_corners, to the layer) before noise
    and bias: out = m_0 * conv(x; s_0) + m_1 * conv(x; s_1).

Batch semantics. Everything is per sample and vectorised over the batch: styles are [B, 2, num_ws, w_dim] (one
pair per image) and masks [B, 2, H, W]. The released code instead keys its two-style path on the batch size:
with batch 1 the latent pair drives region mixing, but with batch >= 2 `style_map` does a layer crossover
*between samples*, the latent becomes [B, 18, 512] and `mask_features` is skipped, so region mixing silently
turns off. Here batch B is exactly B independent batch-1 generations (tested).

Noise: "const" (fixed per-layer maps, like the released registered buffers that it uses in training and
inference), "random" (fresh N(0,1) from the "noise" rng) or "none". Only the "params" collection exists.
"""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxface.errors import UserError
from jaxface.models import stylegan2 as sg2
from jaxface.models.conv import Conv
from jaxface.models.layers import EqDense, NOISE_MODES, bias_act, const_noise, modulated_conv2d
from jaxface.models.resample import upsample2d

NUM_CLASSES = 17  # SofGAN's label space (jaxface.edit.region.CLASSES17)
ENC_RES = 32  # the segmentation encoder's input size (3 stride-2 blocks -> 4x4)
STYLE_IMPLS = ("grouped", "vmap")
NUM_STYLES = 2  # the release's mask_features hard-codes two styles


# ---------------------------------------------------------------------------------------------------------
# Resizing and blending
# ---------------------------------------------------------------------------------------------------------

def _interp_matrix(n_out, n_in):
  """[n_out, n_in] bilinear weights with align_corners=True (PyTorch's, as the release uses)."""
  a = np.zeros((n_out, n_in), np.float32)
  if n_in == 1 or n_out == 1:
    a[:, 0] = 1.0
    return a
  pos = np.arange(n_out) * (n_in - 1) / (n_out - 1)
  lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
  frac = (pos - lo).astype(np.float32)
  a[np.arange(n_out), lo] += 1.0 - frac
  a[np.arange(n_out), lo + 1] += frac
  return a


def resize_bilinear(x, h, w):
  """x [B, H, W, C] -> [B, h, w, C], bilinear with align_corners=True (separable: two small matmuls)."""
  if x.shape[1:3] == (h, w):
    return x
  ah = jnp.asarray(_interp_matrix(h, x.shape[1]), x.dtype)
  aw = jnp.asarray(_interp_matrix(w, x.shape[2]), x.dtype)
  return jnp.einsum("hH,bHWc,wW->bhwc", ah, x, aw)


def blend(feats, mask):
  """Region blend of per-style features: feats [B, 2, H, W, C], mask [B, 2, Hm, Wm] -> [B, H, W, C]."""
  h, w = feats.shape[2:4]
  m = resize_bilinear(jnp.moveaxis(mask, 1, -1).astype(jnp.float32), h, w).astype(feats.dtype)  # [B, H, W, 2]
  return feats[:, 0] * m[..., 0:1] + feats[:, 1] * m[..., 1:2]


def two_style_conv(x, weight, styles, demodulate=True, up=1, dtype=None, impl="grouped"):
  """The modulated conv once per style: x [B, H, W, I], styles [B, 2, I] -> [B, 2, H', W', O].

  impl "grouped": the style axis folded into the batch (one conv over 2B samples, the release's grouped-conv
  trick with batch_style = 2 * batch). impl "vmap": jax.vmap over the style axis. Same numbers.
  """
  b, k = styles.shape[:2]
  if impl == "grouped":
    xx = jnp.broadcast_to(x[:, None], (b, k) + x.shape[1:]).reshape((b * k,) + x.shape[1:])
    y = modulated_conv2d(xx, weight, styles.reshape(b * k, -1), demodulate, up, dtype)
    return y.reshape((b, k) + y.shape[1:])
  if impl == "vmap":
    return jax.vmap(lambda s: modulated_conv2d(x, weight, s, demodulate, up, dtype), in_axes=1,
                    out_axes=1)(styles)
  raise ValueError(f"style impl must be one of {STYLE_IMPLS}, got {impl!r}")


# ---------------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------------

class SemanticModulation(nn.Module):
  """SPADE-like gamma, beta [B, h, w, features] from the one-hot label map resized to (h, w): a shared 3x3 conv
  + lrelu(0.2), then a 3x3 conv each. Plain (not equalised) convs, as released."""
  features: int
  hidden: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, seg, h, w):
    s = resize_bilinear(seg.astype(jnp.float32), h, w).astype(self.dtype)
    a = nn.leaky_relu(Conv(self.hidden, (3, 3), padding=1, dtype=self.dtype, name="shared")(s), 0.2)
    gamma = Conv(self.features, (3, 3), padding=1, dtype=self.dtype, name="gamma")(a)
    beta = Conv(self.features, (3, 3), padding=1, dtype=self.dtype, name="beta")(a)
    return gamma, beta


def _noise(x, strength, noise_id, noise_mode, rng_fn):
  b, h, w = x.shape[:3]
  if noise_mode == "random":
    return x + jax.random.normal(rng_fn(), (b, h, w, 1), x.dtype) * strength.astype(x.dtype)
  if noise_mode == "const":
    return x + (const_noise(noise_id, h, w) * strength).astype(x.dtype)
  if noise_mode != "none":
    raise UserError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
  return x


class SIWConv(nn.Module):
  """StyledConv with two styles: affine(w_k) -> modulated conv per style -> region blend -> + noise -> bias,
  lrelu -> [SPADE: x * (1 + gamma) + beta]. The noise map is shared by both styles (added after the blend)."""
  features: int
  kernel_size: int = 3
  up: int = 1
  noise_id: int = 0
  spade: bool = False
  spade_hidden: int = 128
  clamp: Optional[float] = None
  dtype: Any = jnp.float32
  style_impl: str = "grouped"

  @nn.compact
  def __call__(self, x, w, mask, seg, noise_mode="const"):
    cin, k = x.shape[-1], self.kernel_size
    styles = EqDense(cin, bias_init=1.0, name="affine")(w)  # [B, 2, I] float32
    weight = self.param("kernel", nn.initializers.normal(1.0), (k, k, cin, self.features), jnp.float32)
    y = two_style_conv(x, weight, styles, True, self.up, self.dtype, self.style_impl)
    y = blend(y, mask)
    strength = self.param("noise_strength", nn.initializers.zeros, (), jnp.float32)
    y = _noise(y, strength, self.noise_id, noise_mode, lambda: self.make_rng("noise"))
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    y = bias_act(y, bias, "lrelu", clamp=self.clamp)
    if self.spade:
      gamma, beta = SemanticModulation(self.features, self.spade_hidden, self.dtype, name="spade")(
          seg, y.shape[1], y.shape[2])
      y = y * (1.0 + gamma.astype(y.dtype)) + beta.astype(y.dtype)
    return y


class SIWToRGB(nn.Module):
  """Two-style ToRGB: modulated 1x1 (no demodulation) per style -> region blend -> + bias. float32."""
  features: int = 3
  clamp: Optional[float] = None
  style_impl: str = "grouped"

  @nn.compact
  def __call__(self, x, w, mask):
    cin = x.shape[-1]
    styles = EqDense(cin, bias_init=1.0, name="affine")(w) * (1.0 / np.sqrt(cin))
    weight = self.param("kernel", nn.initializers.normal(1.0), (1, 1, cin, self.features), jnp.float32)
    y = blend(two_style_conv(x, weight, styles, False, 1, jnp.float32, self.style_impl), mask)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return bias_act(y, bias, "linear", clamp=self.clamp)


class SegEncoder(nn.Module):
  """One-hot label map -> [B, 4, 4, widths[-1]]: resize to 32x32, then StyleGAN2-D residual blocks (two 3x3
  convs, blur + stride-2 down, a 1x1 skip, both * sqrt(1/2)), widths 17 -> 32 -> 64 -> 128 as released."""
  widths: Sequence[int] = (32, 64, 128)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, seg):
    x = resize_bilinear(seg.astype(jnp.float32), ENC_RES, ENC_RES).astype(self.dtype)
    for i, width in enumerate(self.widths):
      x = sg2.DiscriminatorBlock(x.shape[-1], width, dtype=self.dtype, name=f"b{i}")(x)
    return x


# ---------------------------------------------------------------------------------------------------------
# Synthesis and generator
# ---------------------------------------------------------------------------------------------------------

def check_inputs(seg, ws, mask, num_ws, w_dim, num_classes=NUM_CLASSES):
  """Shape checks (static, so they work under jit) with messages a user can act on."""
  if seg.ndim != 4 or seg.shape[1] != seg.shape[2] or seg.shape[-1] != num_classes:
    raise UserError(f"the label map must be one-hot [batch, S, S, {num_classes}] (square), got {tuple(seg.shape)}; "
                    f"pass labels through jaxface.edit.region.onehot first")
  if ws.ndim != 4 or ws.shape[1:] != (NUM_STYLES, num_ws, w_dim):
    raise UserError(f"styles must be one pair per image, [batch, {NUM_STYLES}, {num_ws}, {w_dim}]; got "
                    f"{tuple(ws.shape)}")
  if mask.ndim != 4 or mask.shape[1] != NUM_STYLES:
    raise UserError(f"the region mask must be [batch, {NUM_STYLES}, H, W] (one channel per style), got "
                    f"{tuple(mask.shape)}")
  if not seg.shape[0] == ws.shape[0] == mask.shape[0]:
    raise UserError(f"label map, styles and mask disagree on the batch size: {seg.shape[0]}, {ws.shape[0]}, "
                    f"{mask.shape[0]}")


class SIWSynthesis(nn.Module):
  """(seg one-hot [B, S, S, 17], ws [B, 2, num_ws, w_dim], mask [B, 2, Hm, Wm]) -> image [B, R, R, 3] float32."""
  resolution: int
  w_dim: int = 512
  channel_base: int = 32768
  channel_max: int = 512
  num_classes: int = NUM_CLASSES
  enc_widths: Sequence[int] = (32, 64, 128)
  spade_resolutions: Sequence[int] = (64, 128, 256)
  spade_hidden: int = 128
  conv_clamp: Optional[float] = None
  dtype: Any = jnp.float32
  style_impl: str = "grouped"

  @property
  def num_ws(self):
    return sg2.num_ws_for(self.resolution)

  @nn.compact
  def __call__(self, seg, ws, mask, noise_mode="const"):
    check_inputs(seg, ws, mask, self.num_ws, self.w_dim, self.num_classes)
    ws, mask = ws.astype(jnp.float32), mask.astype(jnp.float32)
    res_list = [2 ** i for i in range(2, int(np.log2(self.resolution)) + 1)]
    ch = sg2.channels_per_resolution(res_list, self.channel_base, self.channel_max)
    kw = dict(clamp=self.conv_clamp, dtype=self.dtype, style_impl=self.style_impl, spade_hidden=self.spade_hidden)
    x = SegEncoder(tuple(self.enc_widths), self.dtype, name="encoder")(seg)
    x = SIWConv(ch[4], noise_id=5, name="b4_conv", **kw)(x, ws[:, :, 0], mask, seg, noise_mode)
    img = SIWToRGB(3, self.conv_clamp, self.style_impl, name="b4_torgb")(x, ws[:, :, 1], mask)
    i = 1
    for res in res_list[1:]:
      base = 2 * int(np.log2(res))
      x = SIWConv(ch[res], up=2, noise_id=base, spade=res in tuple(self.spade_resolutions),
                  name=f"b{res}_conv0", **kw)(x, ws[:, :, i], mask, seg, noise_mode)
      x = SIWConv(ch[res], noise_id=base + 1, name=f"b{res}_conv1", **kw)(x, ws[:, :, i + 1], mask, seg, noise_mode)
      y = SIWToRGB(3, self.conv_clamp, self.style_impl, name=f"b{res}_torgb")(x, ws[:, :, i + 2], mask)
      img = upsample2d(img) + y
      i += 2
    return img.astype(jnp.float32)


class SIWGenerator(nn.Module):
  """Mapping (shared by both styles) + SIW synthesis. `map(z)` takes z [..., z_dim] -> w [..., w_dim];
  `synthesize(seg, ws, mask, noise_mode)`; `__call__(seg, z, mask)` with z [B, 2, z_dim]."""
  resolution: int = 256
  z_dim: int = 512
  w_dim: int = 512
  mapping_layers: int = 8
  mapping_lr_mul: float = 0.01
  channel_base: int = 32768
  channel_max: int = 512
  num_classes: int = NUM_CLASSES
  seg_res: int = 128
  enc_widths: Sequence[int] = (32, 64, 128)
  spade_resolutions: Sequence[int] = (64, 128, 256)
  spade_hidden: int = 128
  conv_clamp: Optional[float] = None
  dtype: Any = jnp.float32
  style_impl: str = "grouped"

  def __post_init__(self):
    check = sg2._check_resolution  # pylint: disable=protected-access
    check(self.resolution, self.channel_base, self.channel_max, "SIWGenerator")
    if self.style_impl not in STYLE_IMPLS:
      raise UserError(f"style_impl must be one of {STYLE_IMPLS}, got {self.style_impl!r}")
    super().__post_init__()

  def setup(self):
    self.mapping = sg2.Mapping(self.z_dim, self.w_dim, self.mapping_layers, self.mapping_lr_mul, True)
    self.synthesis = SIWSynthesis(self.resolution, self.w_dim, self.channel_base, self.channel_max,
                                  self.num_classes, tuple(self.enc_widths), tuple(self.spade_resolutions),
                                  self.spade_hidden, self.conv_clamp, self.dtype, self.style_impl)

  @property
  def num_ws(self):
    return sg2.num_ws_for(self.resolution)

  def map(self, z):
    w = self.mapping(z.reshape(-1, z.shape[-1]))
    return w.reshape(z.shape[:-1] + (self.w_dim,))

  def synthesize(self, seg, ws, mask, noise_mode="const"):
    return self.synthesis(seg, ws, mask, noise_mode)

  def __call__(self, seg, z, mask, noise_mode="const"):
    w = self.map(z)  # [B, 2, w_dim]
    ws = jnp.broadcast_to(w[:, :, None], w.shape[:2] + (self.num_ws, self.w_dim))
    return self.synthesis(seg, ws, mask, noise_mode)


def broadcast_ws(w, num_ws):
  """w [B, 2, w_dim] (one vector per style) or [B, 2, num_ws, w_dim] -> [B, 2, num_ws, w_dim]."""
  if w.ndim == 3:
    return jnp.broadcast_to(w[:, :, None], w.shape[:2] + (num_ws, w.shape[-1]))
  return w
