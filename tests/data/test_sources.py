"""Image helpers (against an independent numpy Lanczos), record format, and every source kind."""

import io
import os
import sys
import types

import numpy as np
import pytest
from ml_collections import ConfigDict
from PIL import Image

from jaxface.data import generated, images, pipeline, sources
from jaxface.errors import ConfigError, DataError


def _cfg(**kw):
  base = dict(kind="folder", path="", tfds_name="", split="train", resolution=8, max_bad_fraction=0.01,
              worker_count=0, prefetch=2)
  base.update(kw)
  return ConfigDict(base)


def _png_bytes(a, mode=None):
  buf = io.BytesIO()
  Image.fromarray(a, mode=mode).save(buf, format="PNG")
  return buf.getvalue()


# ------------------------------------------------------------------------------------------------ resize reference

def _lanczos(x):
  x = np.asarray(x, np.float64)
  out = np.sinc(x) * np.sinc(x / 3.0)
  return np.where(np.abs(x) < 3.0, out, 0.0)


def _resample_axis(a, out_size):
  """Antialiased Lanczos-3 along axis 0 (kernel widened by the scale on downscale), float64."""
  n = a.shape[0]
  scale = n / out_size
  fs = max(scale, 1.0)
  support = 3.0 * fs
  rows = []
  for x in range(out_size):
    center = (x + 0.5) * scale
    lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n)
    idx = np.arange(lo, hi)
    w = _lanczos((idx + 0.5 - center) / fs)
    rows.append(np.tensordot(w / w.sum(), a[lo:hi], axes=(0, 0)))
  return np.stack(rows)


def _reference_resize(img, r):
  a = img.astype(np.float64)
  a = _resample_axis(np.swapaxes(a, 0, 1), r)          # width first, as PIL does
  a = np.clip(np.round(np.swapaxes(a, 0, 1)), 0, 255)  # PIL stores the first pass as 8-bit
  return np.clip(np.round(_resample_axis(a, r)), 0, 255)


@pytest.mark.parametrize("shape,r", [((37, 53), 16), ((64, 64), 8), ((8, 8), 16)])
def test_resize_matches_numpy_lanczos(shape, r):
  rng = np.random.default_rng(0)
  smooth = rng.integers(0, 256, size=(shape[0] // 4 + 2, shape[1] // 4 + 2, 3)).astype(np.uint8)
  img = np.asarray(Image.fromarray(smooth).resize(shape[::-1], Image.Resampling.BILINEAR))
  img = np.clip(img.astype(int) + rng.integers(-20, 21, size=img.shape), 0, 255).astype(np.uint8)
  out = images.center_crop_resize(img, r)
  s = min(shape)
  top, left = (shape[0] - s) // 2, (shape[1] - s) // 2
  ref = _reference_resize(img[top:top + s, left:left + s], r)
  assert out.shape == (r, r, 3) and out.dtype == np.uint8
  assert np.abs(out.astype(int) - ref).max() <= 1  # PIL uses 22-bit fixed-point weights (exact in practice)
  assert np.abs(out.astype(int) - ref).mean() < 0.05


def test_center_crop_takes_the_middle_square():
  img = np.zeros((20, 40, 3), np.uint8)
  img[:, :10] = (255, 0, 0)
  img[:, 10:30] = (0, 255, 0)
  img[:, 30:] = (0, 0, 255)
  out = images.center_crop_resize(img, 4)
  assert (out == (0, 255, 0)).all()
  tall = np.transpose(img, (1, 0, 2))
  assert (images.center_crop_resize(tall, 16) == (0, 255, 0)).all()


def test_decode_modes_and_broken_files():
  rgba = np.zeros((6, 6, 4), np.uint8)
  rgba[..., 0] = 200
  rgba[..., 3] = 128
  out = images.decode_image(_png_bytes(rgba))
  assert out.shape == (6, 6, 3) and abs(int(out[0, 0, 0]) - 100) <= 1 and out[0, 0, 1] == 0  # over black
  gray = np.arange(36, dtype=np.uint8).reshape(6, 6)
  out = images.decode_image(_png_bytes(gray))
  assert out.shape == (6, 6, 3) and (out[..., 0] == gray).all() and (out[..., 2] == gray).all()
  g16 = (np.arange(36, dtype=np.uint16).reshape(6, 6) * 1000)
  out = images.decode_image(_png_bytes(g16))
  assert out.shape == (6, 6, 3) and out[5, 5, 0] == round(35000 / 257)
  buf = io.BytesIO()
  Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buf, format="JPEG", quality=95)
  out = images.decode_image(buf.getvalue())
  assert np.abs(out.astype(int) - 90).max() <= 2
  good = _png_bytes(np.full((32, 32, 3), 7, np.uint8))
  for broken in (b"", b"not an image", good[: len(good) // 2]):
    with pytest.raises(images.DECODE_ERRORS):
      images.decode_image(broken)


def test_jpeg_reduced_decode_stays_close_and_exif_rotates():
  rng = np.random.default_rng(3)
  small = rng.integers(0, 256, size=(12, 12, 3)).astype(np.uint8)
  img = np.asarray(Image.fromarray(small).resize((96, 96), Image.Resampling.BICUBIC))
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format="JPEG", quality=95)
  fast = images.to_square_rgb(buf.getvalue(), 16)            # decodes at 1/4 scale (24px), then resizes
  full = images.center_crop_resize(images.decode_image(buf.getvalue()), 16)
  assert images.decode_image(buf.getvalue(), min_size=16).shape == (24, 24, 3)
  assert np.abs(fast.astype(int) - full).mean() < 3
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90 CW to display"
  tall = np.zeros((8, 4, 3), np.uint8)
  tall[0] = 255
  buf = io.BytesIO()
  Image.fromarray(tall).save(buf, format="PNG", exif=exif)
  out = images.decode_image(buf.getvalue())
  assert out.shape == (4, 8, 3) and (out[:, -1] == 255).all()  # top row became the right column


def test_array_to_rgb_shapes():
  assert images.array_to_rgb(np.zeros((4, 5))).shape == (4, 5, 3)
  assert images.array_to_rgb(np.zeros((4, 5, 1), np.uint8)).shape == (4, 5, 3)
  assert images.array_to_rgb(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
  assert (images.array_to_rgb(np.full((2, 2, 3), 1.0, np.float32)) == 255).all()
  with pytest.raises(ValueError):
    images.array_to_rgb(np.zeros((4, 5, 2)))


@pytest.mark.parametrize("bad", [12, 2, 0, -8, "x", 64.5, None])
def test_check_resolution_rejects(bad):
  with pytest.raises(ConfigError, match="power of two"):
    images.check_resolution(bad)


def test_check_resolution_accepts():
  assert [images.check_resolution(r) for r in (4, 64, 1024)] == [4, 64, 1024]


def test_record_roundtrip_is_lossless():
  img = np.random.default_rng(1).integers(0, 256, size=(8, 8, 3)).astype(np.uint8)
  plain = images.encode_record(img)
  assert plain.startswith(images.PNG_MAGIC)
  rec = images.decode_record(plain)
  assert (images.decode_image(rec["image"]) == img).all()
  meta = {"factors": np.arange(5, dtype=np.float32), "identity": np.int32(3)}
  rec = images.decode_record(images.encode_record(img, meta))
  assert (images.decode_image(rec["image"]) == img).all()
  assert rec["factors"].dtype == np.float32 and (rec["factors"] == np.arange(5)).all() and rec["identity"] == 3
  with pytest.raises(ValueError):
    images.encode_record(img, {"name": np.array("a string")})


# -------------------------------------------------------------------------------------------------------- sources

def test_folder_source_recursive_sorted(tmp_path):
  (tmp_path / "b").mkdir()
  for rel in ["z.png", "a.JPG", "b/c.jpeg", "notes.txt", ".hidden.png"]:
    (tmp_path / rel).write_bytes(_png_bytes(np.zeros((4, 4, 3), np.uint8)))
  src = sources.make_source(_cfg(path=str(tmp_path)))
  assert src.files == ["a.JPG", "b/c.jpeg", "z.png"]
  assert len(src) == 3 and src[2]["image"].startswith(images.PNG_MAGIC)
  assert src.describe(1) == os.path.join(str(tmp_path), "b", "c.jpeg")


def test_folder_source_errors(tmp_path):
  with pytest.raises(DataError, match="does not exist.*data.path"):
    sources.make_source(_cfg(path=str(tmp_path / "missing")))
  (tmp_path / "x.txt").write_text("hi")
  with pytest.raises(DataError, match="no .png/.jpg"):
    sources.make_source(_cfg(path=str(tmp_path)))
  with pytest.raises(ConfigError, match="data.path"):
    sources.make_source(_cfg(path=""))


def test_arrayrecord_source_errors(tmp_path):
  with pytest.raises(DataError, match="jaxface.data.prepare"):
    sources.make_source(_cfg(kind="arrayrecord", path=str(tmp_path)))
  with pytest.raises(DataError, match="jaxface.data.prepare"):
    sources.make_source(_cfg(kind="arrayrecord", path=str(tmp_path / "*.array_record")))
  (tmp_path / "data-00000-of-00001.array_record").write_bytes(b"garbage, not array_record")
  with pytest.raises(DataError, match="jaxface.data.prepare"):
    sources.make_source(_cfg(kind="arrayrecord", path=str(tmp_path)))


def test_make_source_kind_and_resolution_errors():
  with pytest.raises(ConfigError, match="folder.*arrayrecord"):
    sources.make_source(_cfg(kind="zip"))
  with pytest.raises(ConfigError, match="power of two"):
    sources.make_source(_cfg(kind="generated", resolution=48))


def test_synthetic_kind_dispatches_lazily(monkeypatch):
  seen = {}
  fake = types.ModuleType("jaxface.data.synthetic")
  fake.make_source = lambda cfg: seen.setdefault("cfg", cfg) and "the synthetic source"
  monkeypatch.setitem(sys.modules, "jaxface.data.synthetic", fake)
  cfg = _cfg(kind="synthetic")
  assert sources.make_source(cfg) == "the synthetic source" and seen["cfg"] is cfg
  monkeypatch.setitem(sys.modules, "jaxface.data.synthetic", None)  # as if the module were absent
  with pytest.raises(ConfigError, match="jaxface.data.synthetic"):
    sources.make_source(cfg)


def test_generated_is_a_pure_function_of_index_and_resolution():
  a, b = generated.render(5, 16), generated.render(5, 16)
  assert a.shape == (16, 16, 3) and a.dtype == np.uint8 and (a == b).all()
  assert np.abs(generated.render(6, 16).astype(int) - a).mean() > 5  # different faces
  assert a.std() > 10  # not a flat image
  # The same face at any resolution: a downscaled 64px render is close to the native 16px one.
  down = images.center_crop_resize(generated.render(5, 64), 16)
  assert np.abs(down.astype(int) - a).mean() < 6
  src = sources.make_source(_cfg(kind="generated", resolution=16))
  assert len(src) == generated.DEFAULT_NUM_IMAGES and (src[5]["image"] == a).all()
  assert len(sources.make_source(_cfg(kind="generated", resolution=16, num_examples=10))) == 10
  with pytest.raises(IndexError):
    src[len(src)]


# ----------------------------------------------------------------------------------------------------------- TFDS

@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  """A tiny TFDS data set in array_record format, built without TensorFlow (images given as PNG bytes)."""
  import tensorflow_datasets as tfds

  class JxfTinyFaces(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(None, None, 3)),
          "label": tfds.features.ClassLabel(num_classes=3),
          "name": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(12)}

    def _generate_examples(self, n):
      for i in range(n):  # non-square 10x14 images whose colour encodes the index
        yield i, {"image": _png_bytes(np.full((10, 14, 3), 10 * i, np.uint8)), "label": i % 3, "name": f"im{i}"}

  d = tmp_path_factory.mktemp("tfds")
  JxfTinyFaces(data_dir=str(d), file_format="array_record").download_and_prepare()
  return str(d)


def test_tfds_source_reads_and_feeds_the_pipeline(tfds_dir):
  cfg = _cfg(kind="tfds", tfds_name="jxf_tiny_faces", path=tfds_dir, resolution=8)
  src = sources.make_source(cfg)
  assert len(src) == 12
  assert sorted(int(src[i]["image"][0, 0, 0]) for i in range(12)) == [10 * i for i in range(12)]
  it = pipeline.make_iterator(cfg, global_batch_size=4, seed=0, process_index=0, process_count=1)
  batches = [next(it) for _ in range(3)]
  assert set(batches[0]) == {"image", "label"}  # the string feature is dropped
  assert batches[0]["image"].shape == (4, 8, 8, 3)
  seen = sorted(int(v) for b in batches for v in b["image"][:, 0, 0, 0])
  assert seen == [10 * i for i in range(12)]
  for b in batches:  # labels travel with their images
    assert ((b["image"][:, 0, 0, 0] // 10) % 3 == b["label"]).all()


def test_tfds_errors(tfds_dir, tmp_path):
  with pytest.raises(DataError, match="neither in the TFDS catalog"):
    sources.make_source(_cfg(kind="tfds", tfds_name="jxf_no_such_set", path=tfds_dir))
  with pytest.raises(DataError, match="not prepared.*array_record"):
    sources.make_source(_cfg(kind="tfds", tfds_name="mnist", path=str(tmp_path)))
  with pytest.raises(DataError, match="data.split"):
    sources.make_source(_cfg(kind="tfds", tfds_name="jxf_tiny_faces", path=tfds_dir, split="test"))
  with pytest.raises(ConfigError, match="tfds_name"):
    sources.make_source(_cfg(kind="tfds", tfds_name=""))
