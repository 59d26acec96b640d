"""Identity net: ROC-AUC vs hand computations, held-out verification pairs, the dlib chip crop, and a short
training on the shared loop whose frozen net loads back from the workdir."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import idnet as idnet_config
from jaxface.errors import CheckpointError, ConfigError
from jaxface.eval import identity as ev
from jaxface.train import idnet
from jaxface.runs import idnet as idnet_run
from jaxface.data.synthetic_world import CLASSES
from jaxface.train import loop
from jaxface.runs.priors import load_priors


def test_roc_auc_hand_computed():
  # Positives 0.9, 0.4; negatives 0.5, 0.1, 0.4. Pairs (pos > neg): 0.9 beats all 3; 0.4 beats 0.1, ties 0.4,
  # loses to 0.5 -> (3 + 1 + 0.5) / 6.
  assert ev.roc_auc([0.9, 0.5, 0.4, 0.1, 0.4], [1, 0, 1, 0, 0]) == pytest.approx(4.5 / 6)
  assert ev.roc_auc([3, 2, 1], [1, 1, 0]) == 1.0
  assert ev.roc_auc([1, 2, 3], [1, 1, 0]) == 0.0
  r = np.random.default_rng(0)
  s, l = r.normal(size=300), r.integers(2, size=300)
  brute = np.mean([(a > b) + 0.5 * (a == b) for a in s[l == 1] for b in s[l == 0]])
  assert ev.roc_auc(s, l) == pytest.approx(brute)
  with pytest.raises(ConfigError):
    ev.roc_auc([0.1, 0.2], [1, 1])


def test_pairs_are_held_out_and_labelled():
  a, b, labels = ev.make_pairs(40, 30, 40, {"num_identities": 40}, seed=1)
  ids_a, ids_b = a["identity"], b["identity"]
  assert labels.sum() == 20
  assert np.all((ids_a >= 30) & (ids_b >= 30))
  np.testing.assert_array_equal(ids_a == ids_b, labels == 1)
  assert not np.array_equal(a["angle"][labels == 1], b["angle"][labels == 1])  # same person, other sample


def test_dlib_chip_places_the_landmarks():
  # A render whose eyes/mouth sit at known pixels: the chip's template points must land on them.
  res = 64
  img = np.zeros((res, res, 3), np.float32)
  yy, xx = np.mgrid[:res, :res] + 0.5
  img[..., 0] = xx / res  # a ramp: chip values reveal where they were sampled
  img[..., 1] = yy / res
  lm = np.zeros((68, 2), np.float32)
  drop = 24.0 * (ev.CHIP_MOUTH[1] - ev.CHIP_LEFT_EYE[1]) / (ev.CHIP_RIGHT_EYE[0] - ev.CHIP_LEFT_EYE[0])
  lm[36:42], lm[42:48], lm[48:68] = (20.0, 24.0), (44.0, 24.0), (32.0, 24.0 + drop)  # similar to the template
  chip = np.asarray(ev.dlib_chip(jnp.asarray(img), jnp.asarray(lm), size=150)) / 255.0
  for (fx, fy), (px, py) in ((ev.CHIP_LEFT_EYE, (20, 24)), (ev.CHIP_RIGHT_EYE, (44, 24)),
                             (ev.CHIP_MOUTH, (32, 24 + drop))):
    cx, cy = int(fx * 150), int(fy * 150)
    np.testing.assert_allclose(chip[cy, cx, :2] * res, (px, py), atol=0.6)


def test_oracle_and_random_embedders_bracket_the_auc():
  pairs = ev.make_pairs(20, 20, 40, {"num_identities": 40}, seed=2)
  # Hair chromaticity and the hair's share of the image (per-identity colour and style, modulated by light and
  # pose) separate identities well above chance (measured 0.97); a constant embedding separates nothing.
  world = {"num_identities": 40}
  hair = CLASSES.index("hair")

  def hair_features(out):
    m = (out["seg"] == hair)[..., None]
    col = (out["image"] * m).sum((1, 2)) / jnp.maximum(m.sum((1, 2)), 1)
    return jnp.concatenate([col / jnp.maximum(col.sum(-1, keepdims=True), 1e-3), m.mean((1, 2))], -1)

  res = ev.verify((hair_features, lambda x, y: -jnp.linalg.norm(x - y, axis=-1)), pairs, world, 32, batch_size=20)
  assert res["pairs"] == 20 and res["roc_auc"] > 0.85
  const = (lambda out: jnp.zeros((out["image"].shape[0], 3)), lambda x, y: jnp.sum(x * y, -1))
  assert ev.verify(const, pairs, world, 16, batch_size=20)["roc_auc"] == 0.5  # all ties


def test_train_tiny_and_load_idnet(tmp_path):
  cfg = idnet_config.get_config("tiny,steps=2")
  cfg.wandb.mode = "disabled"
  cfg.ckpt.async_save = False
  cfg.batch_size = 8
  workdir = str(tmp_path / "run")
  state = loop.train(cfg, workdir)
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl")) if '"loss"' in l]
  assert rows and all(np.isfinite(r["loss"]) for r in rows)
  res = json.load(open(os.path.join(workdir, "eval", "step_2.json")))["synthetic_idnet"]
  assert 0.0 <= res["roc_auc"] <= 1.0 and res["pairs"] == cfg.eval.num_pairs
  net = idnet_run.load_idnet(workdir)
  assert net["resolution"] == 16 and net["step"] == 2
  x = jax.random.uniform(jax.random.key(0), (3, 16, 16, 3), minval=-1, maxval=1)
  e = net["embed"](x)
  assert e.shape == (3, 16)
  np.testing.assert_allclose(jnp.linalg.norm(e, axis=-1), 1.0, rtol=1e-5)
  want = idnet_run.embed_fn(cfg, jax.device_get(state["params"]["net"]), jax.device_get(state["batch_stats"]))(x)
  np.testing.assert_allclose(e, want, rtol=1e-4, atol=1e-5)
  with pytest.raises(CheckpointError, match="not the priors method"):
    load_priors(workdir)  # a priors loader on an idnet workdir


def test_config_rejects_overlapping_identities():
  cfg = idnet_config.get_config("tiny")
  cfg.eval.first_identity = 10  # below num_train_identities=20: evaluation would see trained identities
  with pytest.raises(ConfigError, match="disjoint"):
    idnet.make_data(cfg)
