"""R-Net on the synthetic world (jaxface/train/rnet.py) through the shared loop, at tiny shapes.

Proves the wiring: on-device rendering inside the step, every loss term (coefficient, landmark, photometric),
checkpoints, the held-out evaluation JSON, and `load_rnet` reading back exactly the trained model.
"""

import json
import os

import jax
import numpy as np
import pytest

from jaxface import config as config_lib
from jaxface.data import synthetic, synthetic_factors as sf
from jaxface.eval import recon as recon_eval
from jaxface.errors import CheckpointError, ConfigError
from jaxface.runs import rnet as rnet_run
from jaxface.train import loop, rnet

TINY = [("data.resolution", "32"), ("data.level", "0"), ("model.width", "8"), ("model.stats_samples", "64"),
        ("batch_size", "8"), ("total_steps", "2"), ("optim.warmup_steps", "1"), ("log.every_steps", "1"),
        ("ckpt.every_steps", "1"), ("ckpt.async_save", "false"), ("wandb.mode", "disabled"),
        ("eval.num_samples", "8"), ("eval.batch_size", "8"), ("loss.w_photo", "1.0"), ("loss.w_gamma_mono", "1.0"),
        ("render_mix", "0.5")]


def _config(*extra):
  return config_lib.build("configs/rnet.py:small", TINY + list(extra))


def test_rnet_trains_evaluates_and_loads(tmp_path):
  config = _config()
  state = loop.train(config, str(tmp_path))
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  last = [r for r in rows if "loss" in r][-1]
  for k in ("loss", "loss_id", "loss_exp", "loss_angle", "loss_gamma", "loss_landmark", "loss_photo",
            "loss_gamma_mono", "yaw_err_deg"):
    assert np.isfinite(last[k]), k
  assert last["loss_photo"] > 0 and last["loss_landmark"] > 0
  result = json.load(open(tmp_path / "eval" / "step_2.json"))
  for k in ("yaw_deg", "pitch_deg", "roll_deg", "landmark_pct", "exp_r2", "gamma_r2"):
    assert np.isfinite(result[k]), k
  assert result["num_samples"] == 8 and set(result["pass"]) == set(recon_eval.THRESHOLDS)
  # The saved coefficient statistics are the world's.
  mean, std = rnet.coeff_stats(config)
  np.testing.assert_allclose(np.asarray(state["coeff_mean"]), mean)
  # load_rnet reads back the trained network: same coefficients as the in-memory final state.
  model = rnet_run.load_rnet(str(tmp_path))
  assert model.step == 2 and model.order == "disco"
  f = sf.stack([sf.sample_factors(10 ** 9 + i, sf.as_world_config(config.data)) for i in range(4)])
  images = jax.jit(lambda x: synthetic.render_batch(x, 32, config.data))(
      {k: f[k] for k in synthetic.RENDER_KEYS})["image"]
  live = rnet_run.RNetModel(config, {"params": state["params"], "batch_stats": state["batch_stats"]},
                        np.asarray(state["coeff_mean"]), np.asarray(state["coeff_std"]), 2)
  np.testing.assert_allclose(np.asarray(model.coeffs(images)), np.asarray(live.coeffs(images)), atol=1e-5)
  coeffs, lm = model.predict(images)
  assert coeffs["exp"].shape == (4, sf.N_EXP) and lm.shape == (4, 68, 2)


def test_rnet_rejects_data_without_truth_and_bad_orders():
  with pytest.raises(ConfigError, match="synthetic"):
    rnet.validate(_config(("data.kind", "folder")))
  with pytest.raises(ConfigError, match="order"):
    rnet.validate(_config(("model.order", "bfm")))


def test_load_rnet_errors_name_the_problem(tmp_path):
  with pytest.raises(CheckpointError, match="config.json"):
    rnet_run.load_rnet(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps({"trainer": "parser"}))
  with pytest.raises(CheckpointError, match="trainer='parser'"):
    rnet_run.load_rnet(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps({"trainer": "rnet"}))
  with pytest.raises(CheckpointError, match="no checkpoints"):
    rnet_run.load_rnet(str(tmp_path))
  os.makedirs(tmp_path / "checkpoints" / "5")
  with pytest.raises(CheckpointError, match="step 7"):
    rnet_run.load_rnet(str(tmp_path), step=7)
