"""PyTorch ResNet weights -> Flax trees: `convert_torch` (a torchvision-layout state dict -> params and
batch_stats of models/resnet.py's `ResNet`) and `convert_deep3d` (Deep3DFaceRecon_pytorch's R-Net checkpoint ->
the flat params of models/rnet.py's `RNet`).
"""

import numpy as np

from jaxface.convert import flatten, torchzip
from jaxface.errors import AssetError





def convert_torch(sd, prefix=""):
  """torchvision-style ResNet state dict -> {'params': ..., 'batch_stats': ...} nested numpy trees."""
  params, stats = {}, {}

  def put(tree, path, leaf, v):
    node = tree
    for p in path:
      node = node.setdefault(p, {})
    node[leaf] = v

  for k, v in sd.items():
    if not k.startswith(prefix):
      continue
    parts = k[len(prefix):].split(".")
    if parts[0] == "fc":
      continue
    if parts[0].startswith("layer"):  # layer1.0.downsample.1.weight -> layer1_0/downsample_bn
      mods = [f"{parts[0]}_{parts[1]}"]
      rest = parts[2:]
      if rest[0] == "downsample":
        rest = ["downsample_conv" if rest[1] == "0" else "downsample_bn"] + rest[2:]
      mods += rest[:-1]
    else:
      mods = parts[:-1]
    leaf = parts[-1]
    is_bn = mods[-1].startswith("bn") or mods[-1] == "downsample_bn"
    if leaf == "num_batches_tracked":
      continue
    if is_bn:
      if leaf in ("running_mean", "running_var"):
        put(stats, mods, "mean" if leaf == "running_mean" else "var", v.astype("float32"))
      else:
        put(params, mods, "scale" if leaf == "weight" else "bias", v.astype("float32"))
    else:
      put(params, mods, "kernel", v.astype("float32").transpose(2, 3, 1, 0))
  return {"params": params, "batch_stats": stats}


def convert_deep3d(path):
  """Deep3DFaceRecon_pytorch checkpoint (epoch_20.pth: {'net_recon': state dict, ...}) or a bare state
  dict -> flat params ('params/...', 'batch_stats/...', '__depth__') for `RNet`."""
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
