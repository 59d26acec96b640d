"""R-Net: a ResNet backbone -> the face model's coefficient vector (Deep3DFaceRecon's ReconNet).

Deep3DFaceRecon (and DiscoFaceGAN's R-Net) regress 257 BFM coefficients from a 224x224 aligned crop in
[0, 1]: [id 80 | exp 64 | tex 80 | angles 3 | SH light 27 | translation xy 2 | z 1]. Their head is seven
zero-initialised 1x1 convs on the pooled features; that is one dense layer whose outputs are the
concatenation, which is how it is stored here (`head`). The coefficient count is configurable so the
same module serves the synthetic face model's layout. ResNet-50 is the faithful choice; ResNet-18 the
small one.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxface.convert import unflatten
from jaxface.models.resnet import ResNet

DEEP3D_SPLITS = (80, 64, 80, 3, 27, 2, 1)  # id, exp, tex, angle, gamma (SH light), xy, z


class RNet(nn.Module):
  """(N, H, W, 3) RGB in [0, 1] -> (N, num_coeffs)."""
  num_coeffs: int = sum(DEEP3D_SPLITS)
  depth: int = 50
  train: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    feats = ResNet(self.depth, self.train, self.dtype, name="backbone")(x)
    return nn.Dense(self.num_coeffs, kernel_init=nn.initializers.zeros, param_dtype=jnp.float32,
                    name="head")(feats)


def from_flat(flat, dtype=jnp.float32):
  """(RNet module, variables) from converted flat params."""
  tree = jax.tree.map(jnp.asarray, unflatten(flat))
  n = tree["params"]["head"]["bias"].shape[0]
  return RNet(num_coeffs=n, depth=int(flat["__depth__"]), dtype=dtype), tree
