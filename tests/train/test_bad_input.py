"""Bad input gives a clear message and exit code 2 (or a counted skip), never a traceback, never a
lost checkpoint."""

import hashlib
import os

import numpy as np
from PIL import Image

from tests.train import helpers


def _assert_user_error(result, *needles):
  out = result.stdout + result.stderr
  assert result.returncode == 2, out
  assert "Traceback" not in out, out
  assert "error:" in result.stderr
  for needle in needles:
    assert needle in out, (needle, out)


def test_misspelled_key(tmp_path):
  _assert_user_error(helpers.run_main(tmp_path, "--config.loss.r1_gama=2"), "r1_gama", "Valid fields", "r1_gamma")


def test_non_power_of_two_resolution(tmp_path):
  _assert_user_error(helpers.run_main(tmp_path, config="configs/stylegan2.py:tiny,res=48"), "power of two")


def test_missing_data_directory(tmp_path):
  _assert_user_error(helpers.run_main(tmp_path / "w", "--config.data.kind=folder",
                                      f"--config.data.path={tmp_path / 'nope'}"), str(tmp_path / "nope"))


def _image_folder(root, good, bad):
  os.makedirs(root, exist_ok=True)
  rng = np.random.default_rng(0)
  for i in range(good):
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(os.path.join(root, f"{i:03d}.png"))
  for i in range(bad):
    with open(os.path.join(root, f"bad{i}.png"), "wb") as f:
      f.write(b"\x89PNG\r\n\x1a\n this is not a png")


def test_corrupt_images_are_counted_then_refused(tmp_path):
  _image_folder(tmp_path / "some_bad", good=30, bad=1)
  result = helpers.run_main(tmp_path / "w1", "--config.data.kind=folder", f"--config.data.path={tmp_path / 'some_bad'}",
                            "--config.data.max_bad_fraction=0.1", "--config.total_steps=5",
                            "--config.log.samples_every_steps=100")
  assert result.returncode == 0, result.stdout + result.stderr
  rows = helpers.metric_rows(tmp_path / "w1")
  assert rows[-1]["data_bad"] >= 1  # 40 draws from 31 files: the corrupt one was met, skipped and counted

  _image_folder(tmp_path / "mostly_bad", good=4, bad=28)
  _assert_user_error(helpers.run_main(tmp_path / "w2", "--config.data.kind=folder",
                                      f"--config.data.path={tmp_path / 'mostly_bad'}"), "max_bad_fraction")


def _digest(directory):
  h = hashlib.sha256()
  for root, _, files in sorted(os.walk(directory)):
    for name in sorted(files):
      h.update(name.encode())
      h.update(open(os.path.join(root, name), "rb").read())
  return h.hexdigest()


def test_checkpoint_from_another_architecture(tmp_path):
  first = helpers.run_main(tmp_path, "--config.total_steps=2", "--config.log.samples_every_steps=100")
  assert first.returncode == 0, first.stdout + first.stderr
  before = _digest(tmp_path / "checkpoints")
  _assert_user_error(helpers.run_main(tmp_path, "--config.model.channel_max=32"), "different model architecture",
                     "config.json")
  assert _digest(tmp_path / "checkpoints") == before  # nothing lost or rewritten
