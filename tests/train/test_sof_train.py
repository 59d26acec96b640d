"""SOF end to end: the tiny preset through `python -m jaxface.main`, the GMM, inversion and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from helpers import ROOT, env, metric_rows  # noqa: E402

from jaxface.edit import sof_codes  # noqa: E402
from jaxface.errors import UserError  # noqa: E402

TINY = ["--config", "configs/sof.py:tiny", "--config.wandb.mode=disabled", "--config.ckpt.async_save=false",
        "--config.total_steps=24", "--config.log.every_steps=4"]


@pytest.fixture(scope="module")
def tiny_run(tiny_sof):
  """The session's tiny SOF training (tests/conftest.py)."""
  return tiny_sof


def test_tiny_preset_trains_and_writes_the_eval_json(tiny_run):
  rows = [r for r in metric_rows(tiny_run) if "loss_ce" in r]
  assert len(rows) >= 5
  first, last = rows[0]["loss_ce"], rows[-1]["loss_ce"]
  assert last < 0.8 * first, (first, last)
  with open(os.path.join(tiny_run, "eval", "step_24.json")) as f:
    res = json.load(f)
  assert res["num_instances"] == 2 and res["resolution"] == 32
  assert 0.0 <= res["heldout_view_miou"] <= 1.0 and res["heldout_view_iou"]["background"] > 0.5
  assert set(res["pass"]) == {"heldout_view_miou"}


def test_gmm_recovers_the_means_of_a_known_mixture():
  rng = np.random.default_rng(0)
  means = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, -6.0, 3.0]])
  covs = [np.diag([1.0, 0.5, 0.2]), np.array([[1.0, 0.6, 0], [0.6, 1.0, 0], [0, 0, 0.3]]), np.eye(3) * 0.4]
  x = np.concatenate([rng.multivariate_normal(m, c, n) for m, c, n in zip(means, covs, (400, 300, 300))])
  gmm = sof_codes.fit_gmm(x, k=3, seed=1)
  order = [int(np.argmin(((gmm["means"] - m) ** 2).sum(-1))) for m in means]
  assert sorted(order) == [0, 1, 2]
  np.testing.assert_allclose(gmm["means"][order], means, atol=0.2)
  np.testing.assert_allclose(gmm["weights"][order], [0.4, 0.3, 0.3], atol=0.04)
  np.testing.assert_allclose(gmm["covs"][order[1]], covs[1], atol=0.25)
  s, comp = sof_codes.sample_gmm(gmm, 3000, seed=2)
  np.testing.assert_allclose(np.bincount(comp, minlength=3) / 3000, gmm["weights"], atol=0.03)
  np.testing.assert_allclose(s[comp == order[2]].mean(0), means[2], atol=0.15)
  s2, _ = sof_codes.sample_gmm(gmm, 3000, seed=2)
  np.testing.assert_array_equal(s, s2)  # seeded
  line = sof_codes.interpolate(means[0], means[1], 5)
  np.testing.assert_allclose(line[[0, 2, 4]], [means[0], (means[0] + means[1]) / 2, means[1]])


def test_gmm_save_load_roundtrip(tmp_path):
  gmm = sof_codes.fit_gmm(np.random.default_rng(0).normal(size=(40, 4)), k=4)
  sof_codes.save_gmm(tmp_path / "g.npz", gmm)
  back = sof_codes.load_gmm(tmp_path / "g.npz")
  np.testing.assert_array_equal(back["covs"], gmm["covs"])
  with pytest.raises(UserError, match="not a GMM file"):
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    sof_codes.load_gmm(tmp_path / "x.npz")


def test_inversion_recovers_a_rendered_label_map():
  """A label map rendered from a known code (random networks: varied maps): inverting it from another code, with
  the networks frozen, raises its mIoU and lowers the loss."""
  import jax
  from configs import sof as sof_config
  from jaxface.eval import sof as sof_eval
  from jaxface.train import sof as sof_lib
  from jaxface.runs import sof as sof_run
  config = sof_config.get_config("tiny")
  state = jax.jit(lambda k: sof_lib.init_state(config, k))(jax.random.key(0))
  model = sof_run.SOFModel(config, state["params"], 0)
  rng = np.random.default_rng(0)
  target_z, start = rng.normal(size=(2, config.model.latent_dim)).astype(np.float32)
  cam = sof_eval.frontal(model)
  target = model.labels(target_z[None], cam[None])[0]
  assert len(np.unique(target)) >= 2
  before = sof_eval.miou_of(model.labels(start[None], cam[None]), target[None], model.num_classes)[0]
  r = sof_codes.invert(model, target, steps=60, lr=0.05, rays=0, z_init=start, w_latent=0.0)
  after = sof_eval.miou_of(model.labels(r["z"][None], cam[None]), target[None], model.num_classes)[0]
  assert r["losses"][-1] < 0.7 * r["losses"][0]
  assert after > before + 0.1, (before, after)


def test_bad_label_maps_and_cameras_are_user_errors(tiny_run):
  from jaxface.train import sof as sof_lib
  from jaxface.runs import sof as sof_run
  model = sof_run.load_sof(str(tiny_run))
  good = np.zeros((32, 32), np.int32)
  bad = good.copy()
  bad[0, :2] = [16, 99]
  with pytest.raises(UserError, match="unknown class ids \\[16, 99\\]"):
    sof_codes.invert(model, bad, steps=1)
  with pytest.raises(UserError, match="shape \\(64, 64\\).*32x32"):
    sof_codes.invert(model, np.zeros((64, 64), np.int32), steps=1)
  with pytest.raises(UserError, match="integer class ids"):
    sof_codes.invert(model, np.full((32, 32), 0.5), steps=1)
  with pytest.raises(UserError, match="yaw 60.0° is out of range.*±45.0°"):
    sof_codes.invert(model, good, yaw=np.deg2rad(60.0), steps=1)
  with pytest.raises(UserError, match="pitch"):
    sof_codes.invert(model, good, pitch=np.deg2rad(-30.0), steps=1)
  from jaxface.render import raymarch
  with pytest.raises(UserError, match="camera 0 is out of range: .*inside the scene sphere"):
    model.labels(model.codes[:1], np.asarray(raymarch.yaw_pitch_c2w(0.0, 0.0, 1.0))[None])


def test_eval_cli_reports_a_missing_workdir_without_a_traceback(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "jaxface.eval.sof", "--workdir", str(tmp_path / "none")], cwd=ROOT,
                        env=env(1), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and "has no config.json" in proc.stderr and "Traceback" not in proc.stderr


def test_ray_batches_are_resumable_and_labels_match_their_pixels():
  from jaxface.data import multiview
  rng = np.random.default_rng(0)
  views = 7
  held = multiview.heldout_indices(views, 2)
  assert held.tolist() == [2, 4] and multiview.heldout_indices(views, 0).size == 0
  with pytest.raises(UserError, match="heldout_views=6"):
    multiview.heldout_indices(views, 6)
  data = {"seg": rng.integers(0, 16, (3, views, 8, 8)).astype(np.uint8), "c2w": rng.normal(size=(3, views, 4, 4)),
          "k": np.eye(3, dtype=np.float32), "heldout_views": held, "train_views": np.setdiff1d(np.arange(views), held)}
  it = multiview.RayBatches(data, 4, 10, seed=3)
  first = [next(it) for _ in range(3)]
  state = it.get_state()
  nxt = next(it)
  it2 = multiview.RayBatches(data, 4, 10, seed=3)
  it2.set_state(state)
  np.testing.assert_array_equal(next(it2)["uv"], nxt["uv"])
  for b in first:
    assert b["uv"].shape == (4, 10, 2) and b["labels"].shape == (4, 10)
    cols, rows = (b["uv"] - 0.5).astype(int).transpose(2, 0, 1)
    for j in range(4):
      view = [v for v in range(views) if np.array_equal(data["c2w"][b["inst"][j], v], b["c2w"][j])][0]
      assert view not in held
      np.testing.assert_array_equal(b["labels"][j], data["seg"][b["inst"][j], view, rows[j], cols[j]])
  full = next(multiview.RayBatches(data, 2, 0, seed=0))
  assert full["uv"].shape == (2, 64, 2)  # 0 = whole views
