"""Face parser on the synthetic world (jaxface/train/parser.py, models/parser.py) through the shared loop.

Proves the wiring at tiny shapes: on-device rendering of images and labels inside the step, the losses,
checkpoints, the held-out mIoU JSON, `load_parser` reading back exactly the trained model, and the hair mask.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import config as config_lib
from jaxface.data import synthetic, synthetic_factors as sf
from jaxface.errors import ConfigError
from jaxface.losses import segmentation as seg_loss
from jaxface.models.parser import Parser
from jaxface.runs import parser as parser_run
from jaxface.train import loop, parser

TINY = [("data.resolution", "32"), ("data.level", "0"), ("model.encoder_width", "8"), ("model.width", "16"),
        ("batch_size", "8"), ("total_steps", "2"), ("optim.warmup_steps", "1"), ("log.every_steps", "1"),
        ("ckpt.every_steps", "2"), ("ckpt.async_save", "false"), ("wandb.mode", "disabled"),
        ("eval.num_samples", "8"), ("eval.batch_size", "8")]


def test_parser_trains_evaluates_and_loads(tmp_path):
  config = config_lib.build("configs/parser.py:small", TINY)
  state = loop.train(config, str(tmp_path))
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  last = [r for r in rows if "loss" in r][-1]
  for k in ("loss", "loss_ce", "loss_dice", "pixel_acc"):
    assert np.isfinite(last[k]), k
  result = json.load(open(tmp_path / "eval" / "step_2.json"))
  assert 0.0 <= result["miou"] <= 1.0 and result["num_samples"] == 8
  assert set(result["iou"]) == set(synthetic.CLASSES)
  model = parser_run.load_parser(str(tmp_path))
  f = sf.stack([sf.sample_factors(10 ** 9 + i, sf.as_world_config(config.data)) for i in range(2)])
  images = jax.jit(lambda x: synthetic.render_batch(x, 32, config.data))(
      {k: f[k] for k in synthetic.RENDER_KEYS})["image"]
  live = parser_run.ParserModel(config, {"params": state["params"], "batch_stats": state["batch_stats"]}, 2)
  np.testing.assert_allclose(np.asarray(model.logits(images)), np.asarray(live.logits(images)), atol=1e-4)
  hair = np.asarray(parser_run.hair_mask(model, images))
  assert hair.shape == (2, 32, 32) and (hair >= 0).all() and (hair <= 1).all()
  assert model.labels(images).shape == (2, 32, 32)


def test_parser_output_shape_and_resolution_check():
  net = Parser(num_classes=5, encoder_width=8, width=16)
  x = jnp.zeros((2, 64, 32, 3))
  out = jax.jit(lambda x: net.apply(net.init(jax.random.key(0), x), x))(x)
  assert out.shape == (2, 64, 32, 5) and out.dtype == jnp.float32
  with pytest.raises(ConfigError, match="multiple of 32"):
    parser.validate(config_lib.build("configs/parser.py:small", [("data.resolution", "48")]))
  with pytest.raises(ConfigError, match="synthetic"):
    parser.validate(config_lib.build("configs/parser.py:small", [("data.kind", "folder")]))


def test_segmentation_losses_reference_values():
  g = np.random.default_rng(0)
  logits = g.normal(size=(2, 4, 4, 3)).astype(np.float32)
  labels = g.integers(0, 2, (2, 4, 4))  # class 2 never occurs: it must not enter the Dice mean
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ce = -np.take_along_axis(logp, labels[..., None], -1).mean()
  np.testing.assert_allclose(float(seg_loss.cross_entropy(jnp.asarray(logits), jnp.asarray(labels))), ce, rtol=1e-5)
  p = np.exp(logp).reshape(-1, 3)
  y = np.eye(3)[labels.reshape(-1)]
  dice = 2 * (p * y).sum(0) / (p.sum(0) + y.sum(0) + 1.0)
  np.testing.assert_allclose(float(seg_loss.soft_dice(jnp.asarray(logits), jnp.asarray(labels))),
                             1 - dice[:2].mean(), rtol=1e-5)
  perfect = jnp.asarray(np.eye(3)[labels] * 50.0)
  assert float(seg_loss.cross_entropy(perfect, jnp.asarray(labels))) < 1e-6
  assert float(seg_loss.soft_dice(perfect, jnp.asarray(labels))) < 0.05


def test_bench_entry_times_train_step_and_forward(tmp_path):
  from jaxface.bench import trained_experts
  out = tmp_path / "results.jsonl"
  rows = trained_experts.run("parser", iters=1, overrides=TINY, results=str(out))
  assert [r["mode"] for r in rows] == ["train_step", "forward"]
  assert all(r["batch"] == 8 and r["img_s"] > 0 and r["resolution"] == 32 for r in rows)
  lines = [json.loads(line) for line in open(out)]
  assert [ln["config"]["mode"] for ln in lines] == ["train_step", "forward"] and lines[0]["bench"] == "trained_experts"
