"""ResNet backbones (torchvision layout) shared by R-Net, the identity net and the parser.

torchvision v1.5 layout: 7x7/2 stem + 3x3/2 max-pool, then four stages of basic (ResNet-18/34) or
bottleneck (ResNet-50/101, stride on the 3x3) blocks with a 1x1-conv + BN shortcut where the shape
changes. BatchNorm uses torch's eps 1e-5 and momentum 0.1 (Flax momentum 0.9), so converted torch
weights (params + batch_stats) reproduce torch's eval-mode outputs, and training works the same way.
Parameters are float32; activations run in `dtype`.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from jaxface.models import conv as conv_lib

STAGES = {18: ((2, 2, 2, 2), "basic"), 34: ((3, 4, 6, 3), "basic"), 50: ((3, 4, 6, 3), "bottleneck"),
          101: ((3, 4, 23, 3), "bottleneck")}


class Block(nn.Module):
  features: int
  stride: int
  bottleneck: bool
  train: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(conv_lib.Conv, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32)
    norm = functools.partial(nn.BatchNorm, use_running_average=not self.train, momentum=0.9, epsilon=1e-5,
                             dtype=self.dtype, param_dtype=jnp.float32)
    s = (self.stride, self.stride)
    if self.bottleneck:
      y = nn.relu(norm(name="bn1")(conv(self.features, (1, 1), name="conv1")(x)))
      y = nn.relu(norm(name="bn2")(conv(self.features, (3, 3), s, [(1, 1), (1, 1)], name="conv2")(y)))
      y = norm(name="bn3")(conv(self.features * 4, (1, 1), name="conv3")(y))
    else:
      y = nn.relu(norm(name="bn1")(conv(self.features, (3, 3), s, [(1, 1), (1, 1)], name="conv1")(x)))
      y = norm(name="bn2")(conv(self.features, (3, 3), padding=[(1, 1), (1, 1)], name="conv2")(y))
    if x.shape[-1] != y.shape[-1] or self.stride != 1:
      x = norm(name="downsample_bn")(conv(y.shape[-1], (1, 1), s, name="downsample_conv")(x))
    return nn.relu(y + x)


def _stem_and_stages(x, depth, width, train, dtype):
  """The torchvision ResNet layout, built inside the calling module's compact method (so parameter names are
  conv1, bn1, layer{i}_{j} in that module): returns [stem (H/2), C2 (H/4), ..., C5 (H/32)] feature maps."""
  sizes, kind = STAGES[depth]
  x = conv_lib.Conv(width, (7, 7), (2, 2), [(3, 3), (3, 3)], use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                    name="conv1")(x.astype(dtype))
  x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32,
                   name="bn1")(x)
  stem = nn.relu(x)
  x = nn.max_pool(stem, (3, 3), (2, 2), [(1, 1), (1, 1)])
  feats = [stem]
  for i, n in enumerate(sizes):
    for j in range(n):
      x = Block(width * 2 ** i, 2 if (j == 0 and i > 0) else 1, kind == "bottleneck", train, dtype,
                name=f"layer{i + 1}_{j}")(x)
    feats.append(x)
  return feats


class ResNet(nn.Module):
  """(N, H, W, 3) -> (N, C) globally average-pooled features (C = 8·width basic / 32·width bottleneck)."""
  depth: int = 50
  train: bool = False
  dtype: jnp.dtype = jnp.float32
  width: int = 64  # first stage's channels (64 = torchvision; stages double it)

  @nn.compact
  def __call__(self, x):
    return _stem_and_stages(x, self.depth, self.width, self.train, self.dtype)[-1].astype(jnp.float32).mean((1, 2))


class Encoder(nn.Module):
  """(N, H, W, 3) -> [stem (H/2), C2 (H/4), C3 (H/8), C4 (H/16), C5 (H/32)] feature maps, same layout and names.

  `width` is the first stage's channel count. Narrower encoders keep the ResNet layout at a fraction of the FLOPs
  (width 32: ~1/4), which is what a CPU can train in an hour."""
  depth: int = 18
  width: int = 64
  train: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    return _stem_and_stages(x, self.depth, self.width, self.train, self.dtype)


