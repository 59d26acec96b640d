"""Attribute predictor on the synthetic world (configs/attributes.py, jaxface/train/attributes.py) and its
InterFaceGAN registration (`--predictor world_attributes[@WORKDIR]`, jaxface/edit/predictors.py).

One tiny run through the shared loop proves the wiring (labels, losses, checkpoint, held-out eval JSON, loading,
the predictor's [N, 6] scores); the metrics and the loss are checked against independent references.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from jaxface import config as config_lib
from jaxface.data import synthetic, synthetic_factors as sf
from jaxface import interfacegan  # noqa: F401  (registers the world_attributes predictor)
from jaxface.edit import predictors
from jaxface.errors import CheckpointError, ConfigError, UserError
from jaxface.eval import attributes as attributes_eval
from jaxface.runs import attributes as attributes_run
from jaxface.train import attributes, loop


@pytest.fixture(scope="module")
def tiny_attributes(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("attributes")
  config = config_lib.build("configs/attributes.py:tiny")
  state = loop.train(config, str(workdir))
  return str(workdir), config, state


def _heldout_images(config, n, res):
  return synthetic.render_items([10 ** 9 + i for i in range(n)], res, config.data, batch_size=n)["image"] * 2 - 1


def test_trains_evaluates_loads_and_scores(tiny_attributes):
  workdir, config, state = tiny_attributes
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  last = [r for r in rows if "loss" in r][-1]
  for k in ("loss", "loss_glasses", "loss_hair", "hair_acc") + tuple(f"loss_{k}" for k in attributes_run.REGRESSION):
    assert np.isfinite(last[k]), k
  result = json.load(open(os.path.join(workdir, "eval", "step_2.json")))
  assert result["num_samples"] == 8 and result["start"] == 10 ** 9
  for k in ("glasses_accuracy", "hair_accuracy"):
    assert 0.0 <= result[k] <= 1.0, k
  for k in tuple(f"{k}_r2" for k in attributes_run.REGRESSION) + ("hair_lightness_r2", "yaw_median_error_deg"):
    assert np.isfinite(result[k]), k

  # The loaded model is exactly the trained state.
  model = attributes_run.load_attributes(workdir)
  assert model.step == 2
  for a, b in zip(jax.tree.leaves(model.variables), jax.tree.leaves({"params": state["params"],
                                                                     "batch_stats": state["batch_stats"]})):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(model.target_mean, np.asarray(state["target_mean"]))

  # The registered predictor: [N, 8] columns in SCORE_NAMES order, at the generator's resolution (resized to 32).
  images = _heldout_images(config, 3, 64)
  p = predictors.get_predictor(f"world_attributes@{workdir}")
  assert tuple(p.names) == attributes_run.SCORE_NAMES
  scores = p(images)
  assert scores.shape == (3, 8) and np.isfinite(scores).all()
  out = jax.tree.map(np.asarray, model.outputs(images))
  np.testing.assert_allclose(scores[:, [0, 1, 3, 4, 5, 6, 7]], np.c_[out["glasses_logit"], out["regression"]],
                             atol=1e-5)
  logits = out["hair_logits"].astype(np.float64)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  np.testing.assert_allclose(scores[:, 2], probs @ (sf.HAIR_RGB @ [0.299, 0.587, 0.114]), atol=1e-5)
  # Scores differ between images (a constant predictor would pass the shape checks).
  assert np.ptp(scores, axis=0).max() > 0


def test_bare_name_uses_the_cached_bootstrap_of_the_default_preset(tiny_attributes, monkeypatch):
  from jaxface.train import experts as disco_experts
  seen = {}

  def fake_bootstrap(cfg, name, spec, log=print):
    seen.update(cfg=cfg, name=name, spec=spec)
    return tiny_attributes[0]

  monkeypatch.setattr(disco_experts, "trained_bootstrap", fake_bootstrap)
  p = predictors.get_predictor("world_attributes")
  assert tuple(p.names) == attributes_run.SCORE_NAMES and seen["name"] == "attributes"
  default = config_lib.load_config_file("configs/attributes.py")
  assert seen["cfg"].total_steps == default.total_steps and seen["cfg"].model.width == default.model.width
  assert seen["cfg"].config_file == "configs/attributes.py"  # the cache key does not depend on the checkout path
  assert seen["cfg"].wandb.mode == "disabled"


def test_bad_predictor_specs_and_workdirs_raise_user_errors(tmp_path, tiny_attributes):
  missing = tmp_path / "nope"
  with pytest.raises(UserError, match=f"path '{missing}' does not exist"):
    predictors.get_predictor(f"world_attributes@{missing}")
  with pytest.raises(UserError, match="does not exist"):
    predictors.get_predictor("world_attributes@")
  (tmp_path / "empty").mkdir()
  with pytest.raises(CheckpointError, match="empty.*no config.json"):
    predictors.get_predictor(f"world_attributes@{tmp_path / 'empty'}")
  other = tmp_path / "other"
  other.mkdir()
  (other / "config.json").write_text(json.dumps({"trainer": "parser"}))
  with pytest.raises(CheckpointError, match="trainer='parser'.*configs/attributes.py"):
    attributes_run.load_attributes(str(other))
  with pytest.raises(UserError, match="takes no path"):
    predictors.get_predictor(f"brightness@{tiny_attributes[0]}")
  with pytest.raises(UserError, match="unknown predictor 'smile_net' before '@'"):
    predictors.get_predictor(f"smile_net@{tiny_attributes[0]}")
  with pytest.raises(ConfigError, match="synthetic"):
    attributes.validate(config_lib.build("configs/attributes.py:tiny", [("data.kind", "folder")]))
  with pytest.raises(ConfigError, match="multiple of 32"):
    attributes.validate(config_lib.build("configs/attributes.py:tiny", [("data.resolution", "48")]))


def test_metrics_match_independent_references():
  g = np.random.default_rng(0)
  true = g.normal(size=200)
  pred = 0.8 * true + g.normal(0, 0.5, 200) + 0.3  # biased: R^2 must differ from the squared correlation
  np.testing.assert_allclose(attributes_eval.r2_score(pred, true), skm.r2_score(true, pred), rtol=1e-10)
  assert abs(attributes_eval.r2_score(pred, true) - np.corrcoef(pred, true)[0, 1] ** 2) > 0.05
  labels = g.uniform(size=300) < 0.3
  scores = np.round(labels * 0.7 + g.normal(0, 0.6, 300), 1)  # rounded: many ties
  brute = np.mean([(sp > sn) + 0.5 * (sp == sn) for sp in scores[labels] for sn in scores[~labels]])
  np.testing.assert_allclose(attributes_eval.roc_auc(scores, labels), brute, rtol=1e-12)
  np.testing.assert_allclose(attributes_eval.roc_auc(scores, labels), skm.roc_auc_score(labels, scores), rtol=1e-12)
  assert np.isnan(attributes_eval.roc_auc(scores, np.zeros(300, bool)))

  n = 50
  outputs = {"glasses_logit": g.normal(size=n), "regression": g.normal(size=(n, 6)),
             "hair_logits": g.normal(size=(n, 6)), "hair_lightness": g.uniform(size=n)}
  glasses, reg, hair = (g.uniform(size=n) < 0.4).astype(float), g.normal(size=(n, 6)), g.integers(0, 6, n)
  m = attributes_eval.metrics_from(outputs, glasses, reg, hair)
  assert m["glasses_accuracy"] == skm.accuracy_score(glasses > 0.5, outputs["glasses_logit"] > 0)
  assert m["hair_accuracy"] == skm.accuracy_score(hair, outputs["hair_logits"].argmax(-1))
  luma = sf.HAIR_RGB @ np.array([0.299, 0.587, 0.114])
  np.testing.assert_allclose(m["hair_lightness_r2"], skm.r2_score(luma[hair], outputs["hair_lightness"]), rtol=1e-6)
  for i, k in enumerate(attributes_run.REGRESSION):
    np.testing.assert_allclose(m[f"{k}_r2"], skm.r2_score(reg[:, i], outputs["regression"][:, i]), rtol=1e-10)
  np.testing.assert_allclose(m["yaw_median_error_deg"], np.median(np.abs(outputs["regression"][:, 5] - reg[:, 5])))


def test_loss_and_targets_match_numpy():
  g = np.random.default_rng(1)
  n = 6
  out = g.normal(size=(n, 13)).astype(np.float32)
  glasses = np.array([0, 1, 0, 1, 1, 0], np.float32)
  reg = g.normal(size=(n, 6)).astype(np.float32)
  hair = g.integers(0, 6, n)
  mean, std = g.normal(size=6).astype(np.float32), g.uniform(0.5, 2, 6).astype(np.float32)
  w = {"glasses": 0.5, "hair": 2.0, "smile": 1.0, "gender": 3.0, "age": 0.25, "skin_tone": 0.7, "light_x": 1.2,
       "yaw": 1.5}
  total, terms = attributes.loss(jnp.asarray(out), glasses, reg, hair, mean, std, w)
  p = 1 / (1 + np.exp(-out[:, 0].astype(np.float64)))
  bce = -(glasses * np.log(p) + (1 - glasses) * np.log(1 - p)).mean()
  logits = out[:, 7:].astype(np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ce = -logp[np.arange(n), hair].mean()
  mse = ((out[:, 1:7] - (reg - mean) / std) ** 2).mean(0)
  want = {"glasses": bce, "hair": ce, **dict(zip(attributes_run.REGRESSION, mse))}
  for k, v in want.items():
    np.testing.assert_allclose(float(terms[k]), v, rtol=1e-5, err_msg=k)
  np.testing.assert_allclose(float(total), sum(w[k] * v for k, v in want.items()), rtol=1e-5)

  rec = attributes_run.world_record(10 ** 9 + 3, sf.WorldConfig())
  f = sf.sample_factors(10 ** 9 + 3)
  g_t, reg_t, hair_t = attributes_run.targets(sf.stack([rec]), np)
  labels = sf.attributes(f)
  assert g_t[0] == labels["glasses"] and hair_t[0] == labels["hair_colour"]
  np.testing.assert_allclose(reg_t[0], [labels["smile"], labels["gender"], labels["age"], f["tex"][0],
                                        -np.mean(f["gamma"].reshape(3, 9)[:, 3]), np.rad2deg(f["angle"][1])],
                             rtol=1e-6)
