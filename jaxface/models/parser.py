"""Face parser: a ResNet encoder + FPN-style upsampling decoder -> per-pixel class logits.

DiscoFaceGAN's parser (Lin et al. 2019) is a ResNet-18 backbone with an FPN and a
small mask head; SofGAN needs per-pixel labels for its consistency metrics. This is the same shape, sized for
the synthetic world: the encoder is resnet.ResNet's layout (same parameter names, so torchvision ImageNet weights
converted by `resnet.convert_torch` drop in), the decoder merges the four stages top-down (1x1 laterals, bilinear
upsampling, 3x3 smoothing) and then climbs back to full resolution through the stem's 1/2-resolution features and
a thin full-resolution branch on the input, because the small classes (eyes, brows, lips) are a few pixels wide
at 64x64 and would be lost at the FPN's 1/4 resolution.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxface.models.conv import Conv
from jaxface.models.resnet import Encoder  # noqa: F401  (re-exported: the parser's backbone)


def _upsample(x, hw):
  return jax.image.resize(x, (x.shape[0], hw[0], hw[1], x.shape[-1]), "bilinear")


class Parser(nn.Module):
  """(N, H, W, 3) RGB in [0, 1] -> (N, H, W, num_classes) float32 logits. H, W divisible by 32."""
  num_classes: int = 16
  depth: int = 18
  encoder_width: int = 64  # first encoder stage's channels (64 = torchvision ResNet)
  width: int = 128  # FPN channels
  train: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(Conv, dtype=self.dtype, param_dtype=jnp.float32)
    norm = functools.partial(nn.BatchNorm, use_running_average=not self.train, momentum=0.9, epsilon=1e-5,
                             dtype=self.dtype, param_dtype=jnp.float32)
    x = x.astype(self.dtype) * 2.0 - 1.0
    stem, *levels = Encoder(self.depth, self.encoder_width, self.train, self.dtype, name="encoder")(x)
    # Top-down pathway (FPN): lateral 1x1 on every stage, upsample-and-add from the coarsest.
    top = conv(self.width, (1, 1), name="lateral4")(levels[-1])
    for i in range(len(levels) - 2, -1, -1):
      lat = conv(self.width, (1, 1), name=f"lateral{i}")(levels[i])
      top = lat + _upsample(top, lat.shape[1:3])
    y = nn.relu(norm(name="smooth_bn")(conv(self.width, (3, 3), use_bias=False, name="smooth")(top)))
    # Back to 1/2 resolution with the stem's features, then to full resolution with a thin input branch.
    y = jnp.concatenate([_upsample(y, stem.shape[1:3]), stem], -1)
    y = nn.relu(norm(name="half_bn")(conv(self.width // 2, (3, 3), use_bias=False, name="half")(y)))
    fine = nn.relu(norm(name="full_in_bn")(conv(16, (3, 3), use_bias=False, name="full_in")(x)))
    y = jnp.concatenate([_upsample(y, x.shape[1:3]), fine], -1)
    y = nn.relu(norm(name="full_bn")(conv(self.width // 2, (3, 3), use_bias=False, name="full")(y)))
    return conv(self.num_classes, (1, 1), name="classifier")(y).astype(jnp.float32)
