"""dlib DNN `.dat` files (dlib_face_recognition_resnet_model_v1.dat) read without dlib.

dlib serializes a network layer by layer from input to output. Each layer starts with its type tag
as a dlib string (packed-int length + bytes): `con_4`, `affine_`, `fc_2`, ... A tensor is the packed
int 2 (version) followed by four packed ints (num_samples, k, nr, nc) and raw little-endian float32.
A `con_4` layer stores one tensor holding all filters (OIHW) then the biases, followed by
num_filters, nr, nc, stride_y, stride_x, padding_y, padding_x. `affine_` stores gamma then beta.
`fc_2` stores num_outputs, num_inputs, then a (num_inputs, num_outputs) weight tensor.
A packed int is one control byte (low nibble: byte count, bit 7: sign) then little-endian bytes.
"""

import numpy as np

from jaxface.errors import AssetError


def _packed_int(b, i):
  c = b[i]
  n = c & 0x0F
  if n > 8 or c & 0x70:
    raise ValueError(f"bad packed int at byte {i}")
  v = int.from_bytes(b[i + 1:i + 1 + n], "little")
  return (-v if c & 0x80 else v), i + 1 + n


def _tensor(b, i):
  """Reads a serialized dlib tensor at byte i -> (float32 array (n, k, nr, nc), next i)."""
  version, i = _packed_int(b, i)
  if version != 2:
    raise ValueError(f"tensor version {version} at byte {i}")
  dims = []
  for _ in range(4):
    d, i = _packed_int(b, i)
    dims.append(d)
  n = int(np.prod(dims))
  if n <= 0 or i + 4 * n > len(b):
    raise ValueError(f"tensor of dims {dims} does not fit the file")
  return np.frombuffer(b, "<f4", n, i).reshape(dims).copy(), i + 4 * n


def _dlib_string(tag):
  return bytes([0x01, len(tag)]) + tag.encode()


def read_layers(path):
  """The conv, affine and fc layers of a dlib DNN file, in input-to-output order.

  Returns a list of dicts: {'type': 'con', 'w': OIHW, 'b': (O,), 'stride': (sy, sx), 'padding': (py, px)},
  {'type': 'affine', 'gamma', 'beta'}, {'type': 'fc', 'w': (in, out)}.
  """
  with open(path, "rb") as f:
    b = f.read()
  tags = {t: _dlib_string(t) for t in ("con_4", "affine_", "fc_2")}
  hits = sorted((pos, t) for t, s in tags.items() for pos in _find_all(b, s))
  layers = []
  try:
    for pos, tag in hits:
      i = pos + len(tags[tag])
      if tag == "con_4":
        params, i = _tensor(b, i)
        ints = []
        for _ in range(7):
          v, i = _packed_int(b, i)
          ints.append(v)
        nf, nr, nc, sy, sx, py, px = ints
        n_in = (params.size - nf) // (nf * nr * nc)
        if n_in * nf * nr * nc + nf != params.size:
          raise ValueError(f"con_4 at byte {pos}: {params.size} floats do not fit {nf}x?x{nr}x{nc} + bias")
        flat = params.reshape(-1)
        layers.append({"type": "con", "w": flat[:nf * n_in * nr * nc].reshape(nf, n_in, nr, nc),
                       "b": flat[nf * n_in * nr * nc:], "stride": (sy, sx), "padding": (py, px)})
      elif tag == "affine_":
        params, i = _tensor(b, i)
        flat = params.reshape(-1)
        layers.append({"type": "affine", "gamma": flat[:flat.size // 2], "beta": flat[flat.size // 2:]})
      else:
        n_out, i = _packed_int(b, i)
        n_in, i = _packed_int(b, i)
        params, i = _tensor(b, i)
        if params.size != n_in * n_out:
          raise ValueError(f"fc_2 at byte {pos}: {params.size} floats != {n_in}x{n_out}")
        layers.append({"type": "fc", "w": params.reshape(n_in, n_out)})
  except (ValueError, IndexError) as e:
    raise AssetError(f"{path} is not a readable dlib DNN file ({e}); delete it so it is fetched again") from e
  return layers


def _find_all(b, s):
  i = b.find(s)
  while i >= 0:
    yield i
    i = b.find(s, i + 1)


# dlib_face_recognition_resnet_model_v1: conv0 (7x7/2, 32) then 14 residual blocks of two 3x3 convs.
# (channels, stride of the first conv) per block, input to output, from dlib's dnn_face_recognition_ex.
RESNET_BLOCKS = ([(32, 1)] * 3 + [(64, 2)] + [(64, 1)] * 3 + [(128, 2)] + [(128, 1)] * 2
                 + [(256, 2)] + [(256, 1)] * 2 + [(256, 2)])


def convert_resnet(path):
  """dlib ResNet-29 face descriptor `.dat` -> flat params for `jaxface.models.idnet.DlibResNet`."""
  layers = read_layers(path)
  convs = [l for l in layers if l["type"] == "con"]
  affines = [l for l in layers if l["type"] == "affine"]
  fcs = [l for l in layers if l["type"] == "fc"]
  n_conv = 1 + 2 * len(RESNET_BLOCKS)
  if len(convs) != n_conv or len(affines) != n_conv or len(fcs) != 1:
    raise AssetError(f"{path}: found {len(convs)} conv / {len(affines)} affine / {len(fcs)} fc layers, "
                     f"expected {n_conv}/{n_conv}/1 for dlib_face_recognition_resnet_model_v1")
  names = ["conv0"] + [f"block{k}_conv{j}" for k in range(len(RESNET_BLOCKS)) for j in (0, 1)]
  strides = [2] + [s for _, s in RESNET_BLOCKS for s in (s, 1)]
  out = {}
  for name, stride, conv, aff in zip(names, strides, convs, affines):
    if conv["stride"] != (stride, stride):
      raise AssetError(f"{path}: layer {name} has stride {conv['stride']}, expected {stride}")
    expect_pad = 0 if stride != 1 else conv["w"].shape[2] // 2  # dlib's default: 'same' only at stride 1
    if conv["padding"] != (expect_pad, expect_pad):
      raise AssetError(f"{path}: layer {name} has padding {conv['padding']}, expected {expect_pad}")
    out[f"{name}/kernel"] = conv["w"].transpose(2, 3, 1, 0)  # OIHW -> HWIO
    out[f"{name}/bias"] = conv["b"]
    out[f"{name}/scale"] = aff["gamma"]
    out[f"{name}/offset"] = aff["beta"]
  out["fc_kernel"] = fcs[0]["w"]
  return out
