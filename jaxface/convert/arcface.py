"""insightface ArcFace weights (an iresnet ONNX file or an arcface_torch PyTorch state dict) -> the flat params
of models/idnet.py's `IResNet`, every batch norm folded into a per-channel (scale, offset).
"""


import re

import numpy as np

from jaxface.convert import onnx as onnx_reader
from jaxface.convert import torchzip
from jaxface.errors import AssetError


def _conv_unit(kernel, bias, scale, offset):
  return {"kernel": np.asarray(kernel, np.float32).transpose(2, 3, 1, 0), "bias": bias,
          "scale": scale, "offset": offset}


def _arcface_tree(units, path):
  """Ordered units (see jaxface.convert.onnx.read_units) -> IResNet params (flat) + layers."""
  kinds = "".join({"conv": "c", "affine": "a", "prelu": "p", "fc": "f"}[u["type"]] for u in units)
  # stem: c p; block: a c p c [c]; head: a f
  m = re.fullmatch(r"cp((?:acpcc?)+)af", kinds)
  if not m:
    raise AssetError(f"{path}: layer sequence is not an insightface iresnet (got {kinds[:40]}...)")
  out = {"stem": _conv_unit(units[0]["kernel"], units[0]["bias"], units[0]["scale"], units[0]["offset"]),
         "stem_prelu": {"alpha": units[1]["alpha"]}}
  blocks = re.findall(r"acpcc?", m.group(1))
  pos, layers, stage = 2, [], -1
  for blk in blocks:
    if len(blk) == 5:  # a stage's first block carries the strided 1x1 shortcut
      stage += 1
      layers.append(0)
    if stage < 0:
      raise AssetError(f"{path}: first block has no downsample branch; not an iresnet")
    pre = f"layer{stage + 1}_{layers[stage]}"
    u = units[pos:pos + len(blk)]
    want = (2, 2) if len(blk) == 5 else (1, 1)  # iresnet strides the block's second conv
    if tuple(u[3].get("stride", want)) != want or tuple(u[1].get("stride", (1, 1))) != (1, 1):
      raise AssetError(f"{path}: block {pre} has strides {u[1].get('stride')}/{u[3].get('stride')}, "
                       f"an iresnet has (1, 1)/{want}")
    out[f"{pre}_bn1"] = {"scale": u[0]["scale"], "offset": u[0]["offset"]}
    out[f"{pre}_conv1"] = _conv_unit(u[1]["kernel"], u[1]["bias"], u[1]["scale"], u[1]["offset"])
    out[f"{pre}_prelu"] = {"alpha": u[2]["alpha"]}
    out[f"{pre}_conv2"] = _conv_unit(u[3]["kernel"], u[3]["bias"], u[3]["scale"], u[3]["offset"])
    if len(blk) == 5:
      out[f"{pre}_down"] = _conv_unit(u[4]["kernel"], u[4]["bias"], u[4]["scale"], u[4]["offset"])
    layers[stage] += 1
    pos += len(blk)
  if len(layers) != 4:
    raise AssetError(f"{path}: found {len(layers)} stages, an iresnet has 4")
  bn2, fc = units[pos], units[pos + 1]
  out["bn2"] = {"scale": bn2["scale"], "offset": bn2["offset"]}
  # torch flattens NCHW (c, h, w); we flatten NHWC (h, w, c): permute fc's input rows to match.
  c = bn2["scale"].shape[0]
  hw = int(round((fc["kernel"].shape[0] // c) ** 0.5))
  k = fc["kernel"].reshape(c, hw, hw, -1).transpose(1, 2, 0, 3).reshape(hw * hw * c, -1)
  out["fc_kernel"], out["fc_bias"] = k, fc["bias"]
  out["features"] = {"scale": fc["scale"], "offset": fc["offset"]}
  flat = {}
  for name, v in out.items():
    if isinstance(v, dict):
      flat.update({f"{name}/{leaf}": np.asarray(a, np.float32) for leaf, a in v.items()})
    else:
      flat[name] = np.asarray(v, np.float32)
  flat["__layers__"] = np.asarray(layers, np.int32)
  return flat


def _units_from_state_dict(sd, path, eps=1e-5):
  """arcface_torch iresnet state dict -> the same ordered units the ONNX reader yields."""
  def bn(p):
    try:
      g, b, m, v = (sd[f"{p}.{n}"].astype(np.float64) for n in ("weight", "bias", "running_mean", "running_var"))
    except KeyError as e:
      raise AssetError(f"{path}: missing {e} - is this an insightface iresnet state dict?") from e
    s = g / np.sqrt(v + eps)
    return {"type": "affine", "scale": s.astype(np.float32), "offset": (b - m * s).astype(np.float32)}

  def conv(wkey, bnp):
    a = bn(bnp)
    w = sd[wkey]
    return {"type": "conv", "kernel": w, "bias": np.zeros(w.shape[0], np.float32), "scale": a["scale"],
            "offset": a["offset"]}

  def prelu(p):
    return {"type": "prelu", "alpha": sd[f"{p}.weight"].reshape(-1)}

  if "conv1.weight" not in sd:
    raise AssetError(f"{path}: no conv1.weight; expected an insightface arcface_torch iresnet state dict")
  units = [conv("conv1.weight", "bn1"), prelu("prelu")]
  for i in range(1, 5):
    j = 0
    while f"layer{i}.{j}.conv1.weight" in sd:
      p = f"layer{i}.{j}"
      units += [bn(f"{p}.bn1"), conv(f"{p}.conv1.weight", f"{p}.bn2"), prelu(f"{p}.prelu"),
                conv(f"{p}.conv2.weight", f"{p}.bn3")]
      if f"{p}.downsample.0.weight" in sd:
        units.append(conv(f"{p}.downsample.0.weight", f"{p}.downsample.1"))
      j += 1
  feat = bn("features")
  units += [bn("bn2"), {"type": "fc", "kernel": sd["fc.weight"].T, "bias": sd["fc.bias"],
                        "scale": feat["scale"], "offset": feat["offset"]}]
  return units


def convert_arcface(path):
  """insightface iresnet weights (.onnx, or a torch state dict .pth/.pt) -> flat IResNet params."""
  with open(path, "rb") as f:
    head = f.read(4)
  if head.startswith(b"PK"):  # torch zip archive
    sd = {k: np.asarray(v, np.float32) for k, v in torchzip.read_state_dict(path).items()
          if v.dtype.kind == "f"}
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}  # DataParallel prefix
    return _arcface_tree(_units_from_state_dict(sd, path), path)
  return _arcface_tree(onnx_reader.read_units(path), path)
