"""R-Net: a ResNet backbone -> the face model's coefficient vector (Deep3DFaceRecon's ReconNet).

Deep3DFaceRecon (and DiscoFaceGAN's R-Net) regress 257 BFM coefficients from a 224x224 aligned crop in
[0, 1]: [id 80 | exp 64 | tex 80 | angles 3 | SH light 27 | translation xy 2 | z 1]. Their head is seven
zero-initialised 1x1 convs on the pooled features; that is one dense layer whose outputs are the
concatenation, which is how it is stored here (`head`). The coefficient count is configurable so the
same module serves the synthetic face model's layout. ResNet-50 is the faithful choice; ResNet-18 the
small one.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxface.errors import AssetError
from jaxface.models.resnet import ResNet, convert_torch

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


def convert_deep3d(path):
  """Deep3DFaceRecon_pytorch checkpoint (epoch_20.pth: {'net_recon': state dict, ...}) or a bare state
  dict -> flat params ('params/...', 'batch_stats/...', '__depth__') for `RNet`."""
  from jaxface.convert import flatten, torchzip  # noqa: PLC0415
  obj = torchzip.load(path)
  if isinstance(obj, dict) and "net_recon" in obj:
    obj = obj["net_recon"]
  sd = torchzip.named_tensors(obj)
  sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
  if "backbone.conv1.weight" not in sd:
    raise AssetError(f"{path}: no backbone.conv1.weight; expected a Deep3DFaceRecon checkpoint "
                     "(epoch_20.pth) or its net_recon state dict")
  heads = sorted({int(k.split(".")[1]) for k in sd if k.startswith("final_layers.")})
  if not heads:
    raise AssetError(f"{path}: no final_layers.* tensors; not a Deep3DFaceRecon R-Net")
  w = np.concatenate([sd[f"final_layers.{i}.weight"].reshape(sd[f"final_layers.{i}.weight"].shape[0], -1)
                      for i in heads], 0)
  b = np.concatenate([sd[f"final_layers.{i}.bias"] for i in heads], 0)
  tree = convert_torch(sd, prefix="backbone.")
  tree["params"] = {"backbone": tree["params"], "head": {"kernel": w.T.astype(np.float32),
                                                        "bias": b.astype(np.float32)}}
  tree["batch_stats"] = {"backbone": tree["batch_stats"]}
  bottleneck = any(k.endswith("conv3.weight") for k in sd)
  n_blocks = len({k.split(".")[1:3].__str__() for k in sd if k.startswith("backbone.layer")})
  depth = {(False, 8): 18, (False, 16): 34, (True, 16): 50, (True, 33): 101}.get((bottleneck, n_blocks))
  if depth is None:
    raise AssetError(f"{path}: backbone with {n_blocks} blocks is not a ResNet-18/34/50/101")
  flat = flatten(tree)
  flat["__depth__"] = np.asarray(depth, np.int32)
  return flat


def from_flat(flat, dtype=jnp.float32):
  """(RNet module, variables) from converted flat params."""
  import jax  # noqa: PLC0415

  from jaxface.convert import unflatten  # noqa: PLC0415
  tree = jax.tree.map(jnp.asarray, unflatten(flat))
  n = tree["params"]["head"]["bias"].shape[0]
  return RNet(num_coeffs=n, depth=int(flat["__depth__"]), dtype=dtype), tree
