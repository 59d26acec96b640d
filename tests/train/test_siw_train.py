"""SIW-StyleGAN2 training on the shared loop (tiny preset through `python -m jaxface.main`), the region-edit API on
the trained generator, data/label utilities, and user errors."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface.edit import region
from jaxface.errors import DataError, UserError

from helpers import ROOT, env, metric_rows  # pylint: disable=import-error
from jaxface.runs.workdir import read_run


def test_tiny_run_trains_and_evaluates(tiny_siw):
  rows = [r for r in metric_rows(tiny_siw) if "loss_G" in r]
  assert [r["step"] for r in rows] == [1, 2, 3, 4]
  for r in rows:
    for k in ("loss_G", "loss_D", "D_real", "D_fake"):
      assert math.isfinite(r[k]), (k, r)
  assert all(math.isfinite(r["r1_penalty"]) and math.isfinite(r["pl_penalty"]) for r in rows)  # every step (tiny)
  with open(os.path.join(tiny_siw, "eval", "step_4.json")) as f:
    ev = json.load(f)
  sc = ev["seg_consistency"]
  assert 0.0 <= sc["miou"] <= 1.0 and 0.0 <= sc["parser_real_miou"] <= 1.0
  for name in ("hair", "complexion", "background"):
    loc = ev["locality"][name]
    assert loc["inside"] > 0 and loc["outside"] >= 0 and loc["ratio"] > 1.0, (name, loc)
  samples = os.listdir(os.path.join(tiny_siw, "samples"))
  assert "region_edit.png" in samples and any(s.startswith("samples_") for s in samples)


def _trained(workdir):
  from jaxface.runs import siw as siw_train
  config, state, _ = read_run(str(workdir), trainer="siw")
  return siw_train.generator(config), jax.tree.map(jnp.asarray, state["G_ema"]), config


def test_region_edit_api_and_bad_input(tiny_siw):
  g, params, _ = _trained(tiny_siw)
  labels = np.zeros((2, 16, 16), np.int32)
  labels[:, 4:14, 4:12] = 1
  labels[:, 2:6, 3:13] = 15
  labels[:, 8, 6] = 6
  w = np.asarray(g.apply({"params": params}, jax.random.normal(jax.random.key(0), (2, 2, 8)), method="map"))
  edit = region.region_edit(g, params, labels, w[:, 0], w[:, 1], ["hair", 6], alpha=0.5)
  assert edit.shape == (2, 16, 16, 3) and np.isfinite(np.asarray(edit)).all()
  # The per-frame entry point with the region mask at the generator's label resolution is region_edit.
  mask = region.region_mask(region.nearest_resize(jnp.asarray(labels), g.seg_res), "hair")
  frames = region.make_generate(g)(params, labels, w, mask, "const")
  edited = region.region_edit(g, params, labels, w[:, 0], w[:, 1], "hair", 1.0)
  assert np.abs(np.asarray(frames) - np.asarray(edited)).max() < 1e-5
  bad = labels.copy()
  bad[0, 0, 0] = 17
  with pytest.raises(DataError, match=r"class ids \[17\]"):
    region.region_edit(g, params, bad, w[:, 0], w[:, 1], "hair")
  with pytest.raises(DataError, match="square"):
    region.region_edit(g, params, labels[:, :, :12], w[:, 0], w[:, 1], "hair")
  with pytest.raises(DataError, match="between"):
    region.generate(g, params, labels[:, :4, :4], w)
  with pytest.raises(UserError, match="2 styles per image"):
    region.generate(g, params, labels, np.concatenate([w, w[:, :1]], axis=1))
  with pytest.raises(UserError, match="unknown region"):
    region.region_edit(g, params, labels, w[:, 0], w[:, 1], "beard")
  with pytest.raises(UserError, match="alpha"):
    region.region_edit(g, params, labels, w[:, 0], w[:, 1], "hair", alpha=1.5)


def test_label_utilities():
  from jaxface.data.synthetic_world import CLASSES
  world = np.arange(len(CLASSES))[None, None]
  mapped = region.world_to_sofgan17(world)[0, 0]
  assert [region.CLASSES17[i] for i in mapped[[CLASSES.index("l_nose"), CLASSES.index("r_nose"),
                                               CLASSES.index("hair"), CLASSES.index("l_brow")]]] == [
                                                   "l_nose", "r_nose", "hair", "brow"]
  lab = jnp.asarray([[[4, 5, 1], [0, 15, 4]]])
  flipped = np.asarray(region.flip17(lab))
  assert flipped.tolist() == [[[1, 4, 5], [5, 15, 0]]]
  assert np.asarray(region.flip17(lab, jnp.asarray([False]))).tolist() == lab.tolist()
  # Training masks: complementary, constant within a semantic group, half of the present groups on style 0.
  labels = jnp.asarray(np.random.default_rng(0).integers(0, 17, (6, 12, 12)))
  masks = np.asarray(region.random_group_masks(jax.random.key(3), labels))
  assert np.all(masks.sum(1) == 1.0)
  groups = region.CLASS_BIN[np.asarray(labels)]
  for b in range(6):
    on = {int(g) for g in np.unique(groups[b][masks[b, 0] == 1])}
    off = {int(g) for g in np.unique(groups[b][masks[b, 0] == 0])}
    assert not on & off
    assert len(on) == len(on | off) // 2
  m = np.asarray(region.region_mask(jnp.asarray(lab), "complexion", alpha=0.25))
  assert np.allclose(m[0, 1], 0.25 * np.isin(np.asarray(lab[0]), [1, 4, 5, 9, 12]))
  assert np.allclose(m.sum(1), 1.0)


def test_bad_config_is_a_clean_error(tmp_path):
  cmd = [sys.executable, "-m", "jaxface.main", "--config", "configs/siw.py:tiny", "--workdir", str(tmp_path / "w"),
         "--config.model.seg_res=48"]
  proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and "seg_res=48" in proc.stderr and "Traceback" not in proc.stderr
