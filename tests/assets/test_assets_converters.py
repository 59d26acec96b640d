"""Weight-file readers: torch zip without torch (and without running code), dlib .dat, bad files."""

import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from jaxface.convert import dlib_dat, torchzip
from jaxface.errors import AssetError


class _Evil:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_torchzip_refuses_code(tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.pt"
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps({"w": _Evil(marker)}, protocol=2))
    z.writestr("archive/version", "3\n")
  with pytest.raises(AssetError, match="posix.system|os.system|refusing"):
    torchzip.load(str(path))
  assert not marker.exists()


def test_torchzip_matches_torch_load(tmp_path):
  import torch  # noqa: E402  (test requirement)
  base = torch.randn(5, 7)
  sd = {
      "f32": torch.randn(3, 4), "f16": torch.randn(6).half(), "bf16": torch.randn(2, 3).bfloat16(),
      "i64": torch.arange(5), "scalar": torch.tensor(2.5), "transposed": base.t(),  # strided view
      "slice": base[1:3, 2:], "nested": {"a": torch.ones(2)},
  }
  path = tmp_path / "sd.pt"
  torch.save(sd, path)
  ours = torchzip.load(str(path))
  ref = torch.load(path, weights_only=True)
  for k in ("f32", "f16", "i64", "scalar", "transposed", "slice"):
    np.testing.assert_array_equal(ours[k], ref[k].numpy())
  np.testing.assert_array_equal(ours["bf16"], ref["bf16"].float().numpy())
  assert torchzip.named_tensors(ours)["nested.a"].tolist() == [1.0, 1.0]


def test_torchzip_bad_files(tmp_path):
  p = tmp_path / "x.pt"
  p.write_bytes(b"\x80\x02legacy torch pickle")
  with pytest.raises(AssetError, match="not a torch zip"):
    torchzip.load(str(p))
  with zipfile.ZipFile(p, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
  with pytest.raises(AssetError, match="no tensors"):
    torchzip.read_state_dict(str(p))


def _pint(v):
  """dlib packed int: control byte (byte count | sign bit) + little-endian magnitude."""
  mag = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little") if v else b""
  return bytes([len(mag) | (0x80 if v < 0 else 0)]) + mag


def _tensor(arr, dims):
  return _pint(2) + b"".join(_pint(d) for d in dims) + np.asarray(arr, "<f4").tobytes()


def _string(s):
  return _pint(len(s)) + s.encode()


def test_dlib_dat_reader_on_a_written_file(tmp_path):
  """A file in dlib's serialization (con_4, affine_, fc_2) written here; the reader recovers it."""
  rng = np.random.default_rng(0)
  w = rng.normal(size=(4, 3, 5, 5)).astype(np.float32)
  b = rng.normal(size=4).astype(np.float32)
  g, beta = rng.normal(size=4).astype(np.float32), rng.normal(size=4).astype(np.float32)
  fc = rng.normal(size=(4, 2)).astype(np.float32)
  blob = (_string("input_rgb_image_sized") + _string("con_4")
          + _tensor(np.concatenate([w.ravel(), b]), (w.size + 4, 1, 1, 1))
          + b"".join(_pint(v) for v in (4, 5, 5, 2, 2, 0, 0)) + _string("affine_")
          + _tensor(np.concatenate([g, beta]), (8, 1, 1, 1)) + _string("relu_") + _string("fc_2")
          + _pint(2) + _pint(4) + _tensor(fc, (4, 2, 1, 1)) + struct.pack("<f", 1.0))
  path = tmp_path / "net.dat"
  path.write_bytes(blob)
  layers = dlib_dat.read_layers(str(path))
  assert [l["type"] for l in layers] == ["con", "affine", "fc"]
  np.testing.assert_array_equal(layers[0]["w"], w)
  np.testing.assert_array_equal(layers[0]["b"], b)
  assert layers[0]["stride"] == (2, 2) and layers[0]["padding"] == (0, 0)
  np.testing.assert_array_equal(layers[1]["gamma"], g)
  np.testing.assert_array_equal(layers[2]["w"], fc)
  with pytest.raises(AssetError, match="expected 29/29/1"):  # not the face-recognition ResNet
    dlib_dat.convert_resnet(str(path))
  path.write_bytes(blob[:60])  # truncated
  with pytest.raises(AssetError):
    dlib_dat.read_layers(str(path))


def test_tflite_bad_file(tmp_path):
  from jaxface.convert import tflite  # noqa: PLC0415
  p = tmp_path / "x.tflite"
  p.write_bytes(b"\x00" * 64)
  with pytest.raises(AssetError):
    tflite.convert(str(p))
