"""A narrow R-Net for CPU training: models/rnet.RNet's design (ResNet -> global pool -> zero-initialised dense
head to the coefficients) on a ResNet-layout encoder whose base width is configurable (models/resnet.Encoder).

At width 64 use models/rnet.RNet itself (torchvision layout, loadable from Deep3DFaceRecon weights); this module
exists because a 64-wide ResNet-18 at 64x64 costs ~0.3 GFLOP per image forward, which a shared 2-core CPU
cannot train to convergence in an hour, while width 16-32 keeps the depth and receptive field at 1/16-1/4 of it.
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxface.models.resnet import Encoder


class NarrowRNet(nn.Module):
  """(N, H, W, 3) RGB in [0, 1] -> (N, num_coeffs)."""
  num_coeffs: int
  depth: int = 18
  width: int = 32
  train: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    feats = Encoder(self.depth, self.width, self.train, self.dtype, name="backbone")(x)[-1]
    pooled = feats.astype(jnp.float32).mean((1, 2))
    return nn.Dense(self.num_coeffs, kernel_init=nn.initializers.zeros, param_dtype=jnp.float32,
                    name="head")(pooled)
