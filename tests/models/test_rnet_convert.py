"""Deep3DFaceRecon R-Net checkpoints -> jaxface RNet: same outputs as the torch network."""

import jax
import numpy as np
import pytest

from jaxface import assets
from jaxface.errors import AssetError
from jaxface.models import rnet

import _torch_reference_nets as torch_refs  # noqa: E402  (sibling helper; tests/models is on sys.path)
import torch  # noqa: E402  (test requirement)
from jaxface.convert import deep3d


@pytest.mark.parametrize("depth,size", [(50, 64), (18, 48)])
def test_deep3d_checkpoint_matches_torch(tmp_path, depth, size):
  torch.manual_seed(depth)
  net = torch_refs.randomize_bn(torch_refs.ReconNet(depth)).eval()
  for l in net.final_layers:  # Deep3DFaceRecon zero-initialises these; random here so they are checked
    torch.nn.init.normal_(l.weight, std=0.02)
    torch.nn.init.normal_(l.bias, std=0.1)
  path = tmp_path / "epoch_20.pth"
  # The released checkpoints wrap the net and carry optimizer state next to it.
  torch.save({"net_recon": net.state_dict(), "epoch": 20,
              "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}}}, path)
  flat = deep3d.convert_deep3d(str(path))
  model, variables = rnet.from_flat(flat)
  assert model.depth == depth and model.num_coeffs == 257
  x = np.random.default_rng(0).uniform(0, 1, (2, size, size, 3)).astype(np.float32)
  with torch.no_grad():
    ref = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
  out = np.asarray(jax.jit(model.apply)(variables, x))
  assert out.shape == (2, 257)
  np.testing.assert_allclose(out, ref, atol=2e-4 * np.abs(ref).max(), rtol=0)


def test_rnet_user_asset_through_cache(tmp_path, monkeypatch):
  """The R-Net is a user asset: converted once into the cache, keyed by the file's hash."""
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path / "cache"))
  torch.manual_seed(1)
  net = torch_refs.ReconNet(18).eval()
  path = tmp_path / "rnet.pth"
  torch.save(net.state_dict(), path)
  npz = assets.params_path("rnet_deep3d", str(path))
  assert npz.startswith(str(tmp_path / "cache"))
  assert assets.params_path("rnet_deep3d", str(path)) == npz
  with pytest.raises(AssetError, match="experts.rnet"):
    assets.params_path("rnet_deep3d")


def test_not_an_rnet(tmp_path):
  path = tmp_path / "other.pth"
  torch.save({"conv.weight": torch.zeros(2, 3, 1, 1)}, path)
  with pytest.raises(AssetError, match="backbone.conv1.weight"):
    deep3d.convert_deep3d(str(path))


def test_rnet_train_mode_updates_batch_stats():
  """The Flax module in training mode (no torch weights): BN uses batch statistics and updates them."""
  m = rnet.RNet(num_coeffs=40, depth=18, train=True)
  x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  shapes = jax.eval_shape(m.init, jax.random.key(0), x)  # (a real init spends ~20 s compiling RNG on CPU)
  g = np.random.default_rng(1)
  v = jax.tree.map(lambda s: (g.normal(size=s.shape) * 0.05).astype(np.float32), shapes)
  v["batch_stats"] = jax.tree.map(lambda a: np.ones_like(a), v["batch_stats"])
  out, upd = jax.jit(lambda v, x: m.apply(v, x, mutable=["batch_stats"]))(v, x)
  assert out.shape == (2, 40) and np.isfinite(np.asarray(out)).all()
  old = v["batch_stats"]["backbone"]["bn1"]["mean"]
  new = np.asarray(upd["batch_stats"]["backbone"]["bn1"]["mean"])
  assert not np.allclose(new, old)  # momentum 0.9 update towards the batch mean
