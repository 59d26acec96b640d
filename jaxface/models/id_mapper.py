"""Nitzan et al.'s identity-disentanglement networks: the latent mapper, the W discriminator, the attribute encoder.

A face is split into an identity code (a frozen face-recognition embedding of I_id) and an attribute code (a
trainable encoder of I_attr); the mapper turns their concatenation into ONE w of a frozen, pretrained StyleGAN
(copied to every style layer: the method works in W, not W+), and a small discriminator on w keeps the mapper's
outputs on the generator's W manifold (Nitzan et al., SIGGRAPH Asia 2020).

Initialisation follows the original: Glorot-uniform kernels for the mapper's first two layers, and
VarianceScaling(2 / (1 + 0.2²), fan_in, truncated normal) ("Kaiming for LeakyReLU 0.2") for its last two and for
every discriminator layer; zero biases.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxface.errors import ConfigError
from jaxface.models import inception
from jaxface.models.conv import Conv

LRELU = 0.2
_KAIMING_LRELU = nn.initializers.variance_scaling(2.0 / (1.0 + LRELU**2), "fan_in", "truncated_normal")


class Mapper(nn.Module):
  """[B, id_dim + attr_dim] -> w [B, w_dim]: Dense layers with LeakyReLU 0.2 between, a linear last layer.
  The original's widths are (2048, 1024, 512) hidden and 512 out for 512 + 2048 inputs."""
  hidden: Sequence[int] = (2048, 1024, 512)
  w_dim: int = 512

  @nn.compact
  def __call__(self, z):
    widths = list(self.hidden) + [self.w_dim]
    h = z.astype(jnp.float32)
    for i, width in enumerate(widths):
      init = nn.initializers.glorot_uniform() if i < 2 else _KAIMING_LRELU
      h = nn.Dense(width, kernel_init=init, name=f"linear{i + 1}")(h)
      if i < len(widths) - 1:
        h = nn.leaky_relu(h, LRELU)
    return h


class LatentDiscriminator(nn.Module):
  """w [B, w_dim] -> logits [B]: the original's 256-128-64-1 MLP with LeakyReLU 0.2."""
  hidden: Sequence[int] = (256, 128, 64)

  @nn.compact
  def __call__(self, w):
    h = w.astype(jnp.float32)
    for i, width in enumerate(self.hidden):
      h = nn.leaky_relu(nn.Dense(width, kernel_init=_KAIMING_LRELU, name=f"dense{i}")(h), LRELU)
    return nn.Dense(1, kernel_init=_KAIMING_LRELU, name="logit")(h)[:, 0]


class ConvAttrEncoder(nn.Module):
  """A small trainable image encoder for the attribute code, for when InceptionV3 is too big (CPU, low
  resolution): stride-2 3x3 conv stages with LeakyReLU, global average pooling, a linear projection.
  [B, R, R, 3] in [-1, 1] -> [B, attr_dim]. No normalization layers, so train and inference behave alike."""
  widths: Sequence[int] = (32, 64, 128, 256)
  attr_dim: int = 256
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = x.astype(self.dtype)
    h = nn.leaky_relu(Conv(self.widths[0], (3, 3), dtype=self.dtype, name="stem")(h), LRELU)
    for i, width in enumerate(self.widths):
      h = nn.leaky_relu(Conv(width, (3, 3), strides=2, dtype=self.dtype, name=f"down{i}")(h), LRELU)
      h = nn.leaky_relu(Conv(width, (3, 3), dtype=self.dtype, name=f"conv{i}")(h), LRELU)
    h = jnp.mean(h.astype(jnp.float32), axis=(1, 2))
    return nn.Dense(self.attr_dim, name="proj")(h)


class InceptionAttrEncoder(nn.Module):
  """The original's attribute encoder: InceptionV3's 2048-d average pool (here the FID Inception graph, which is
  ImageNet-trained too, as the initialisation; jaxface/models/inception.py), fine-tuned. [B, R, R, 3] in [-1, 1]
  -> [B, 2048]; resized to 299 bilinearly first."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = jax.image.resize(x.astype(jnp.float32), (x.shape[0], inception.SIZE, inception.SIZE, 3), "bilinear")
    # The FID graph's input convention is x / 128 - 1 on [0, 255], i.e. (x + 1) * 127.5 / 128 - 1 here.
    x = (x + 1.0) * (127.5 / 128.0) - 1.0
    return inception.InceptionV3(dtype=self.dtype, name="inception")(x).astype(jnp.float32)


def attr_encoder(kind, attr_dim, widths, dtype=jnp.float32):
  if kind == "conv":
    return ConvAttrEncoder(tuple(widths), attr_dim, dtype)
  if kind == "inception":
    return InceptionAttrEncoder(dtype)
  raise ConfigError(f"model.attr_encoder={kind!r}; use 'conv' (small, trained from scratch) or 'inception' "
                    f"(InceptionV3 initialised from the FID Inception asset, 2048-d).")
