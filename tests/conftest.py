"""Test setup: 8 simulated CPU devices and XLA:CPU flags, set before JAX initializes.

Every test sees `jax.devices()` == 8 CPU devices, so sharded code paths run on a laptop/CI.
YNNPACK fusions are disabled because jax 0.10's XLA:CPU miscompiles some of them (wrong numbers in
ported conv nets).
"""

import os

_FLAGS = ("--xla_force_host_platform_device_count=8", "--xla_cpu_experimental_ynn_fusion_type=")
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", "")] + [f for f in _FLAGS if f not in os.environ.get("XLA_FLAGS", "")]
).strip()
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Many tests compile the same tiny programs (often in subprocesses): share compiled executables between them.
_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# Parallel pytest-xdist workers get one cache each: JAX writes an entry in place, so a worker could otherwise read
# another's half-written executable.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(_ROOT, ".cache", "jax-compile-test" + (f"-{_WORKER}" if _WORKER else "")))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# Keep tests off the user's real asset cache unless a test asks for it explicitly.
os.environ.setdefault("JAXFACE_CACHE", os.path.join(_ROOT, ".cache", "jaxface-test"))

import jax  # noqa: E402  (after the flags)

jax.config.update("jax_threefry_partitionable", True)

import pytest  # noqa: E402


# Session fixtures that train something, and the xdist group that keeps all their users on one worker (each worker
# would otherwise train its own copy).
_SHARED_TRAINING = {"tiny_disco": "disco", "tiny_sof": "sofgan", "tiny_siw": "sofgan", "tiny_sg2": "sg2"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups off the markers
def pytest_collection_modifyitems(config, items):
  """Groups tests for pytest-xdist's `--dist loadgroup` (pytest.ini): the users of a shared training fixture form
  one group, a file whose tests share a module-scoped fixture forms one, and every other test is its own unit.
  Groups that train go to the front of the queue, then tests/train: the longest work starts first, so the last
  minutes are not one worker finishing a 4-minute training while the other idles."""
  if not config.pluginmanager.hasplugin("xdist"):
    return
  for item in items:
    defs = getattr(item, "_fixtureinfo", None)
    defs = defs.name2fixturedefs if defs else {}
    shared = sorted({_SHARED_TRAINING[f] for f in item.fixturenames if f in _SHARED_TRAINING})
    module_scoped = any(d.scope in ("module", "class", "package") for ds in defs.values() for d in ds)
    if shared:
      item.add_marker(pytest.mark.xdist_group(shared[0]))
    elif module_scoped:
      item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
  rank = lambda item: (0 if any(f in _SHARED_TRAINING for f in item.fixturenames)  # noqa: E731
                       else 1 if item.nodeid.startswith("tests/train/") else 2)
  items.sort(key=rank)  # stable: the order inside each rank is pytest's


@pytest.fixture
def rng():
  return jax.random.key(0)


@pytest.fixture(scope="session")
def tiny_disco(tmp_path_factory):
  """One tiny DiscoFaceGAN training (`configs/disco.py:tiny`, experts bootstrapped into a fresh cache), shared by
  every test that needs a trained generator: training, generation, embedding, the editor.
  Returns dict(root, workdir, env (subprocess environment, JAXFACE_CACHE set), cmd, log)."""
  import subprocess
  import sys
  sys.path.insert(0, os.path.join(_ROOT, "tests", "train"))
  from helpers import env
  root = tmp_path_factory.mktemp("disco")
  e = env()
  e["JAXFACE_CACHE"] = str(root / "cache")
  workdir = root / "run"
  cmd = [sys.executable, "-m", "jaxface.main", "--config", "configs/disco.py:tiny", "--workdir", str(workdir),
         "--config.wandb.mode=disabled"]
  proc = subprocess.run(cmd, cwd=_ROOT, env=e, capture_output=True, text=True, timeout=2400)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return dict(root=root, workdir=workdir, env=e, cmd=cmd, log=proc.stdout + proc.stderr)


def _train_tiny(tmp_path_factory, name, config, *overrides):
  import subprocess
  import sys
  sys.path.insert(0, os.path.join(_ROOT, "tests", "train"))
  from helpers import env
  workdir = tmp_path_factory.mktemp(name) / "run"
  e = env(devices=2)
  e["JAXFACE_CACHE"] = os.environ["JAXFACE_CACHE"]  # multi-view renders and the parser bootstrap are cached
  cmd = [sys.executable, "-m", "jaxface.main", "--config", config, "--workdir", str(workdir),
         "--config.wandb.mode=disabled", "--config.ckpt.async_save=false", *overrides]
  proc = subprocess.run(cmd, cwd=_ROOT, env=e, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return workdir


@pytest.fixture(scope="session")
def tiny_sof(tmp_path_factory):
  """One tiny SOF (geometry) training; its workdir. Shared by the SOF and the SofGAN CLI tests."""
  return _train_tiny(tmp_path_factory, "sof", "configs/sof.py:tiny", "--config.total_steps=24",
                     "--config.log.every_steps=4")


@pytest.fixture(scope="session")
def tiny_siw(tmp_path_factory):
  """One tiny SIW (texture) training; its workdir. Shared by the SIW and the SofGAN CLI tests."""
  return _train_tiny(tmp_path_factory, "siw", "configs/siw.py:tiny")


@pytest.fixture(scope="session")
def tiny_sg2(tmp_path_factory):
  """A tiny StyleGAN2 (16x16, z/w 16) trained 2 steps on the synthetic world, in this process; its workdir.
  The frozen generator of the identity-mapping tests."""
  from jaxface import main as train_main
  w = tmp_path_factory.mktemp("sg2") / "run"
  assert train_main.main(["--workdir", str(w), "--config", "configs/stylegan2.py:tiny,res=16",
                          "--config.total_steps=2", "--config.model.channel_max=16", "--config.model.z_dim=16",
                          "--config.model.w_dim=16", "--config.wandb.mode=disabled", "--config.ckpt.async_save=false",
                          "--config.log.num_samples=4"]) == 0
  return str(w)
