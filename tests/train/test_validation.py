"""Bad settings fail before any work: exit 2, a message naming the key and what it accepts, nothing written.

Each rule has one case. Most run `jaxface.main` in this process (the same code path as the command, without a
second JAX start-up); one runs the real command and times it.
"""

import os
import subprocess
import sys
import time

import pytest

from jaxface import main as main_lib
from tests.train import helpers

def _fails(tmp_path, monkeypatch, capsys, *overrides, config=helpers.TINY, workdir=None):
  """Runs the training command in-process; returns its error text after checking exit 2, speed and no files.
  The tiny StyleGAN2 config runs with 8 devices here (tests/conftest.py): batch sizes must divide by 8."""
  cache = tmp_path / "cache"
  monkeypatch.setenv("JAXFACE_CACHE", str(cache))
  monkeypatch.chdir(tmp_path)
  if config == helpers.TINY:
    overrides = (*helpers.TINY_OVERRIDES, *overrides)
  argv = ["--config", os.path.join(helpers.ROOT, config), "--workdir", str(workdir or tmp_path / "w"), *overrides]
  before = sorted(os.listdir(tmp_path))
  start = time.perf_counter()
  with pytest.raises(SystemExit) as exit_info:
    main_lib.main(argv)
  elapsed = time.perf_counter() - start
  err = capsys.readouterr().err
  assert exit_info.value.code == 2, err
  assert err.startswith("error: ") and "Traceback" not in err, err
  assert elapsed < 5, f"took {elapsed:.1f} s"
  assert sorted(os.listdir(tmp_path)) == before, "a file was written"
  assert not cache.exists()
  return err


RULES = [
    # (overrides, texts the message must contain)
    (["--config.total_steps=-5"], ["config.total_steps=-5", ">= 1"]),
    (["--config.total_steps=0"], ["config.total_steps=0", ">= 1"]),
    (["--config.batch_size=-4"], ["config.batch_size=-4", ">= 1"]),
    (["--config.batch_size=12"], ["config.batch_size=12", "divisible by the number of devices (8)"]),
    (["--config.log.every_steps=0"], ["config.log.every_steps=0", ">= 1"]),
    (["--config.log.samples_every_steps=0"], ["config.log.samples_every_steps=0", ">= 1"]),
    (["--config.log.num_samples=0"], ["config.log.num_samples=0", ">= 1"]),
    (["--config.ckpt.every_steps=0"], ["config.ckpt.every_steps=0", ">= 1"]),
    (["--config.ckpt.keep=0"], ["config.ckpt.keep=0", ">= 1"]),
    (["--config.wandb.mode=onlin"], ["config.wandb.mode='onlin'", "online, offline, disabled"]),
    (["--config.data.kind=foldr"], ["config.data.kind='foldr'", "folder, arrayrecord, tfds, generated, synthetic"]),
    (["--config.data.kind=folder", "--config.data.path=/no/such/folder"], ["config.data.path='/no/such/folder'",
                                                                           "existing folder"]),
    (["--config.data.kind=arrayrecord", "--config.data.path=/no/such/shards"], ["config.data.path", "array_record"]),
    (["--config.data.kind=tfds"], ["config.data.tfds_name", "dataset name"]),
    (["--config.data.resolution=48", "--config.model.resolution=48"], ["config.data.resolution=48", "power of two"]),
    (["--config.data.max_bad_fraction=1.5"], ["config.data.max_bad_fraction=1.5", "[0, 1]"]),
    (["--config.data.worker_count=-1"], ["config.data.worker_count=-1", ">= 0"]),
    (["--config.data.prefetch=0"], ["config.data.prefetch=0", ">= 1"]),
    (["--config.mesh=[('data', 16), ('fsdp', 1)]"], ["config.mesh", "needs 16 devices"]),
    (["--config.model.resolution=32"], ["config.data.resolution=16", "config.model.resolution=32"]),  # the method's
]


@pytest.mark.parametrize("overrides,texts", RULES, ids=[" ".join(r[0]) for r in RULES])
def test_bad_setting_fails_fast(tmp_path, monkeypatch, capsys, overrides, texts):
  err = _fails(tmp_path, monkeypatch, capsys, *overrides)
  for text in texts:
    assert text in err, (text, err)


def test_workdir_that_is_a_file(tmp_path, monkeypatch, capsys):
  (tmp_path / "taken").write_text("not a folder")
  err = _fails(tmp_path, monkeypatch, capsys, workdir=tmp_path / "taken")
  assert "is a file" in err and "taken" in err


@pytest.mark.parametrize("overrides,text", [
    (["--config.batch_size=8", "--config.loss.pix_res=48"], "config.loss.pix_res=48"),  # the method's own rule
    (["--config.batch_size=12"], "config.batch_size=12"),
    (["--config.batch_size=8", "--config.data.kind=folder", "--config.data.path=/no/such/folder"], "config.data.path"),
])
def test_rules_run_before_the_experts_are_prepared(tmp_path, monkeypatch, capsys, overrides, text):
  # configs/disco.py would first train its four experts (minutes); every rule comes before that.
  err = _fails(tmp_path, monkeypatch, capsys, *overrides, config="configs/disco.py:tiny")
  assert text in err, err


def test_the_command_fails_within_five_seconds(tmp_path):
  # The real command on the main config: before, it started training the experts and had not complained after 60 s.
  env = helpers.env(devices=1)
  env["JAXFACE_CACHE"] = str(tmp_path / "cache")
  start = time.perf_counter()
  result = subprocess.run([sys.executable, "-m", "jaxface.main", "--config", "configs/disco.py", "--workdir",
                           str(tmp_path / "w"), "--config.data.kind=foldr"], cwd=helpers.ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
  elapsed = time.perf_counter() - start
  assert result.returncode == 2, result.stdout + result.stderr
  assert "config.data.kind='foldr'" in result.stderr and "synthetic" in result.stderr
  assert elapsed < 5, f"took {elapsed:.1f} s"
  assert os.listdir(tmp_path) == []
