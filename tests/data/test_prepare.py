"""prepare CLI: folder -> ArrayRecord shards + meta.json; skipped files; errors exit 2; lazy dispatches."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordReader
from PIL import Image

from jaxface.data import images, prepare
from jaxface.errors import DataError, UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read_shard(path):
  r = ArrayRecordReader(path)
  try:
    return [r.read([i])[0] for i in range(r.num_records())]
  finally:
    r.close()


@pytest.fixture()
def src(tmp_path):
  """7 images (one non-square photo-like, some in a subfolder, one JPEG) and 2 broken files."""
  root = tmp_path / "src"
  (root / "sub").mkdir(parents=True)
  rng = np.random.default_rng(0)
  for i in range(5):
    Image.fromarray(np.full((12, 12, 3), (10 * i, 0, 0), np.uint8)).save(root / f"a{i}.png")
  Image.fromarray(rng.integers(0, 256, size=(30, 20, 3)).astype(np.uint8)).save(root / "sub" / "photo.png")
  Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(root / "sub" / "j.jpg", quality=95)
  (root / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
  (root / "zero.jpg").write_bytes(b"")
  (root / "readme.txt").write_text("not an image")
  return root


def test_folder_to_shards(src, tmp_path):
  dst = tmp_path / "out"
  meta = prepare.prepare(str(src), str(dst), 8, shards=3, progress=False)
  names = ["data-00000-of-00003.array_record", "data-00001-of-00003.array_record", "data-00002-of-00003.array_record"]
  assert sorted(os.listdir(dst)) == sorted(names + ["meta.json"])  # no .tmp left behind
  on_disk = json.loads((dst / "meta.json").read_text())
  assert on_disk == meta
  assert meta["count"] == 7 and meta["resolution"] == 8 and meta["shards"] == names
  assert sorted(s["file"] for s in meta["skipped"]) == ["sub/broken.png", "zero.jpg"]
  shards = [_read_shard(str(dst / n)) for n in names]
  assert [len(s) for s in shards] == [3, 2, 2]  # round robin over the decodable files
  # Record k (in sorted file order) sits in shard k % 3 at position k // 3, and is lossless PNG.
  order = ["a0.png", "a1.png", "a2.png", "a3.png", "a4.png", "sub/j.jpg", "sub/photo.png"]
  for k, rel in enumerate(order):
    rec = shards[k % 3][k // 3]
    assert rec.startswith(images.PNG_MAGIC)
    got = images.decode_image(rec)
    want = images.center_crop_resize(images.decode_image((src / rel).read_bytes()), 8)
    np.testing.assert_array_equal(got, want)


def test_workers_give_identical_shards(src, tmp_path):
  prepare.prepare(str(src), str(tmp_path / "w0"), 8, shards=2, progress=False)
  prepare.prepare(str(src), str(tmp_path / "w2"), 8, shards=2, workers=2, progress=False)
  for n in ("data-00000-of-00002.array_record", "data-00001-of-00002.array_record"):
    assert _read_shard(str(tmp_path / "w0" / n)) == _read_shard(str(tmp_path / "w2" / n))


def test_existing_destination_needs_overwrite(src, tmp_path):
  dst = tmp_path / "out"
  prepare.prepare(str(src), str(dst), 8, shards=2, progress=False)
  with pytest.raises(UserError, match="--overwrite"):
    prepare.prepare(str(src), str(dst), 8, progress=False)
  meta = prepare.prepare(str(src), str(dst), 16, shards=1, overwrite=True, progress=False)
  assert meta["resolution"] == 16
  assert sorted(os.listdir(dst)) == ["data-00000-of-00001.array_record", "meta.json"]


def test_errors(tmp_path):
  with pytest.raises(DataError, match="not a folder"):
    prepare.prepare(str(tmp_path / "missing"), str(tmp_path / "o"), 8, progress=False)
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="no .png/.jpg"):
    prepare.prepare(str(tmp_path / "empty"), str(tmp_path / "o"), 8, progress=False)
  (tmp_path / "junk").mkdir()
  (tmp_path / "junk" / "x.png").write_bytes(b"junk")
  with pytest.raises(DataError, match="none of the 1 inputs"):
    prepare.prepare(str(tmp_path / "junk"), str(tmp_path / "o"), 8, progress=False)
  assert not [p for p in os.listdir(tmp_path / "o") if "array_record" in p]  # no partial shards
  with pytest.raises(UserError, match="synthetic:10000"):
    prepare.prepare("synthetic:abc", str(tmp_path / "o"), 8, progress=False)
  with pytest.raises(UserError, match="--shards"):
    prepare.prepare(str(tmp_path / "junk"), str(tmp_path / "o"), 8, shards=0, progress=False)


def test_cli_exit_codes(src, tmp_path):
  run = lambda *a: subprocess.run([sys.executable, "-m", "jaxface.data.prepare", *a], capture_output=True,
                                  text=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
  ok = run(str(src), str(tmp_path / "o"), "--resolution", "8", "--no-progress")
  assert ok.returncode == 0, ok.stderr
  assert "wrote 7 images" in ok.stdout and "broken.png" in ok.stderr
  bad = run(str(tmp_path / "missing"), str(tmp_path / "o2"), "--resolution", "8")
  assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
  bad = run(str(src), str(tmp_path / "o3"), "--resolution", "12")
  assert bad.returncode == 2 and "power of two" in bad.stderr and "Traceback" not in bad.stderr


def test_synthetic_source_dispatch(monkeypatch, tmp_path):
  calls = []

  def prepare_items(n, resolution):
    calls.append((n, resolution))
    for i in range(n):
      yield {"image": np.full((resolution, resolution, 3), i, np.uint8),
             "factors": np.arange(3, dtype=np.float32) + i, "identity": np.int32(i)}

  monkeypatch.setitem(sys.modules, "jaxface.data.synthetic",
                      types.SimpleNamespace(prepare_items=prepare_items))
  meta = prepare.prepare("synthetic:4", str(tmp_path / "s"), 8, progress=False)
  assert calls == [(4, 8)] and meta["count"] == 4
  recs = [images.decode_record(r) for r in _read_shard(str(tmp_path / "s" / meta["shards"][0]))]
  for i, rec in enumerate(recs):
    assert (images.decode_image(rec["image"]) == i).all()
    np.testing.assert_array_equal(rec["factors"], np.arange(3, dtype=np.float32) + i)
    assert rec["identity"] == i
  monkeypatch.setitem(sys.modules, "jaxface.data.synthetic", None)  # as if the module were absent
  with pytest.raises(UserError, match="jaxface.data.synthetic"):
    prepare.prepare("synthetic:4", str(tmp_path / "s2"), 8, progress=False)


def test_align_dispatch(monkeypatch, src, tmp_path):
  def align_image(image, resolution):
    if image.shape[:2] == (30, 20):
      raise DataError("no face found")
    return np.ascontiguousarray(image[:, ::-1])[:resolution, :resolution]

  monkeypatch.setitem(sys.modules, "jaxface.data.align", types.SimpleNamespace(align_image=align_image))
  meta = prepare.prepare(str(src), str(tmp_path / "al"), 8, align=True, progress=False)
  assert meta["aligned"] and meta["count"] == 6
  assert any(s["file"] == "sub/photo.png" and "no face" in s["error"] for s in meta["skipped"])
  monkeypatch.setitem(sys.modules, "jaxface.data.align", None)
  with pytest.raises(UserError, match="without --align"):
    prepare.prepare(str(src), str(tmp_path / "al2"), 8, align=True, progress=False)
