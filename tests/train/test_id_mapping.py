"""Identity mapping (Nitzan et al.): the step schedule, which optimizer moves what, training end to end through
the loop, the swap CLI, bad input, and a DiscoFaceGAN as the frozen generator (tiny_disco). The frozen generator
is otherwise the tiny_sg2 fixture; the frozen synthetic experts
are tiny_disco's bootstraps."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from jaxface.errors import ConfigError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _experts(tiny_disco):
  with open(os.path.join(tiny_disco["workdir"], "config.json")) as f:
    e = json.load(f)["experts"]
  return e["rnet"], e["idnet"]


@pytest.fixture(scope="module")
def config(tiny_sg2, tiny_disco):
  from configs import id_mapping as cfg_lib
  from jaxface.train import id_mapping
  from jaxface.runs import id_mapping as id_mapping_run
  c = cfg_lib.get_config(f"tiny,gen={tiny_sg2}")
  c.experts.rnet, c.experts.idnet = _experts(tiny_disco)
  c.wandb.mode = "disabled"
  return id_mapping.prepare(c, log=None)


def test_empty_expert_workdirs_are_bootstrapped_in_the_generators_world(tiny_sg2, tiny_disco, monkeypatch):
  # The training itself is trained_bootstrap's (tests/assets/test_cache_lock.py, and tiny_disco's fixture run); here:
  # which experts prepare asks for, with which preset, in which world, and that it uses what comes back.
  from configs import disco as disco_cfg
  from configs import id_mapping as cfg_lib
  from jaxface.runs import expert_cache
  from jaxface.runs import id_mapping as id_mapping_run
  from jaxface.train import experts as disco_experts, id_mapping
  trained = dict(zip(("rnet", "idnet"), _experts(tiny_disco)))
  seen = []

  def fake_bootstrap(cfg, name, spec, log=print):
    seen.append((name, spec, cfg))
    return trained[name]

  monkeypatch.setattr(disco_experts, "trained_bootstrap", fake_bootstrap)
  c = cfg_lib.get_config(f"tiny,gen={tiny_sg2}")
  c.wandb.mode = "disabled"
  c = id_mapping.prepare(c, log=None)
  gen = id_mapping_run.generator(c)
  want = disco_cfg._bootstrap("tiny", int(gen.resolution))  # pylint: disable=protected-access
  assert [(n, s) for n, s, _ in seen] == [("rnet", want.rnet), ("idnet", want.idnet)]
  for _, _, cfg in seen:
    assert all(cfg.data[k] == gen.config.data[k] for k in expert_cache.WORLD_KEYS)
  assert (c.experts.rnet, c.experts.idnet) == (trained["rnet"], trained["idnet"])


def test_schedule_cross_every_third_adversarial_every_second(config):
  from jaxface.train import id_mapping
  from jaxface.runs import id_mapping as id_mapping_run
  phases = [id_mapping.phase(config, s) for s in range(6)]
  assert [s for s, (cross, _) in enumerate(phases) if cross] == [0, 3]
  assert [s for s, (_, adv) in enumerate(phases) if adv] == [0, 2, 4]
  unified = config.copy_and_resolve_references()
  unified.schedule.unified = True
  assert all(id_mapping.phase(unified, s)[1] for s in range(6))


def test_optimizer_learning_rates_are_1_to_0_1_to_0_4(config):
  import optax
  from jaxface.train import id_mapping
  from jaxface.runs import id_mapping as id_mapping_run
  # Adam's first update is -lr * sign(g) (bias-corrected moments): it reads off each optimizer's lr.
  for tx, mul in zip(id_mapping.optimizers(config), (1.0, config.optim.adv_lr_mul, config.optim.d_lr_mul)):
    u, _ = tx.update({"a": np.ones(3, np.float32)}, tx.init({"a": np.zeros(3, np.float32)}))
    np.testing.assert_allclose(u["a"], -config.optim.lr * mul, rtol=1e-3)
  assert isinstance(id_mapping.optimizers(config)[0], optax.GradientTransformation)


def _changed(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_each_step_kind_moves_only_what_it_should(config):
  from jaxface.train import id_mapping
  from jaxface.runs import id_mapping as id_mapping_run
  state = dict(id_mapping.init_state(config, jax.random.key(0)), **id_mapping.constants(config))
  state = jax.tree.map(np.asarray, state)
  data = id_mapping.make_data(config)
  step = jax.jit(id_mapping.train_step(config), static_argnames="phase")
  seen = {}
  for s in range(4):
    batch = next(data)
    ph = id_mapping.phase(config, s)
    new, metrics = step(state, batch, jax.random.key(s), phase=ph)
    new = jax.tree.map(np.asarray, new)
    cross, adv = ph
    assert ("loss_pixel" in metrics) == (not cross), (s, sorted(metrics))
    assert ("loss_D" in metrics) == adv
    assert _changed(state["params"]["enc"], new["params"]["enc"]) and _changed(state["params"]["map"],
                                                                                new["params"]["map"])
    assert _changed(state["D"], new["D"]) == adv  # D only on adversarial steps
    assert _changed(state["opt_adv"], new["opt_adv"]) == adv  # Adam #2 only on adversarial steps
    assert not _changed(state["frozen"], new["frozen"])  # generator, identity net, R-Net never move
    assert np.isfinite(float(metrics["loss"]))
    seen[ph] = True
    state = new
  assert len(seen) == 4  # steps 0-3 are (cross, adv), (-, -), (-, adv), (cross, -): every kind once


def test_no_gradient_reaches_the_frozen_nets_or_the_identity_code(config):
  from jaxface.train import id_mapping
  from jaxface.runs import id_mapping as id_mapping_run
  state = jax.tree.map(np.asarray, dict(id_mapping.init_state(config, jax.random.key(0)),
                                        **id_mapping.constants(config)))
  batch = next(id_mapping.make_data(config))
  forward = id_mapping_run.mapper_fn(config)
  x = id_mapping_run.to_float(batch["id"])
  # d w / d x_id is zero: the identity code is a constant (stop_gradient), only E_attr sees pixels with gradient
  g_id = jax.grad(lambda a: forward(state["params"], state["frozen"], a, x)[0].sum())(x)
  g_attr = jax.grad(lambda b: forward(state["params"], state["frozen"], x, b)[0].sum())(x)
  assert float(np.abs(g_id).max()) == 0.0 and float(np.abs(g_attr).max()) > 0.0


def test_a_discofacegan_is_mapped_into_with_its_own_sampler(tiny_disco):
  # The generated set of a DiscoFaceGAN must come from its λ priors (z = λ ‖ ε), not from N(0, I) as a StyleGAN's
  # does: rows are checked against the generator's own sampler, map and synthesis, then one step of each kind runs.
  from configs import id_mapping as cfg_lib
  from jaxface.runs import generator_samples as gs
  from jaxface.runs import id_mapping as id_mapping_run
  from jaxface.runs import latent_codes
  from jaxface.train import id_mapping
  c = cfg_lib.get_config(f"tiny,gen={tiny_disco['workdir']}")
  c.experts.rnet, c.experts.idnet = _experts(tiny_disco)
  c.wandb.mode = "disabled"
  c = id_mapping.prepare(c, log=None)
  gen = id_mapping_run.generator(c)
  assert type(gen).__name__ == "DiscoLatents" and gen.truncation_psi == 1.0  # the kind's default: no truncation
  images, ws, meta = gs.open_samples(c.samples.path, gen)
  total = c.samples.num_images + c.samples.num_val
  w = gen.map(gen.sample_z(total, c.samples.seed))
  np.testing.assert_allclose(np.asarray(ws)[:, 0], w, atol=1e-5)
  np.testing.assert_allclose(np.asarray(ws), np.broadcast_to(w[:, None], ws.shape), atol=1e-5)
  want = latent_codes.postprocess(gen.synthesize_wp(np.asarray(ws[:4])))
  assert np.abs(np.asarray(images[:4], np.int32) - want).max() <= 1
  assert meta["w_dim"] == gen.w_dim and meta["fingerprint"] == gs.fingerprint(gen.params)
  state = jax.tree.map(np.asarray, dict(id_mapping.init_state(c, jax.random.key(0)), **id_mapping.constants(c)))
  step, data = jax.jit(id_mapping.train_step(c), static_argnames="phase"), id_mapping.make_data(c)
  for s in range(2):
    new, metrics = step(state, next(data), jax.random.key(s), phase=id_mapping.phase(c, s))
    assert np.isfinite(float(metrics["loss"])) and _changed(state["params"]["map"], new["params"]["map"])
    assert not _changed(state["frozen"], jax.tree.map(np.asarray, new["frozen"]))
    state = jax.tree.map(np.asarray, new)
  # target "z": the mapper outputs standardised λ ‖ ε and the frozen mapping makes w of it; the reference is the
  # generator's own host path from raw λ (un-standardised here by hand) and ε
  c.model.target = "z"
  enc, mapper, _ = id_mapping_run.networks(c)
  params = dict(id_mapping.init_state(c, jax.random.key(1))["params"])
  x = id_mapping_run.to_float(next(data)["id"])
  w, z_id = id_mapping_run.mapper_fn(c)(params, state["frozen"], x, x)
  z_attr = enc.apply({"params": params["enc"]}, x)
  u = np.asarray(mapper.apply({"params": params["map"]}, np.concatenate([z_id, z_attr], -1)), np.float64)
  assert u.shape[-1] == gen.z_dim
  stats, lam_dim = gen.gen.frozen["lambda_stats"], gen.lambda_dim
  raw = np.concatenate([u[:, :lam_dim] * np.asarray(stats["std"]) + np.asarray(stats["mean"]), u[:, lam_dim:]], -1)
  np.testing.assert_allclose(np.asarray(w), gen.map(raw.astype(np.float32)), atol=2e-4)


def _run(args, env=None, check=True):
  sys.path.insert(0, os.path.join(ROOT, "tests", "train"))
  from helpers import env as helper_env
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900,
                        env=env or helper_env(devices=2))
  if check:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_sg2, tiny_disco):
  rnet, idnet = _experts(tiny_disco)
  w = tmp_path_factory.mktemp("idmap") / "run"
  _run(["-m", "jaxface.main", "--config", f"configs/id_mapping.py:tiny,gen={tiny_sg2}", "--workdir", str(w),
        f"--config.experts.rnet={rnet}", f"--config.experts.idnet={idnet}", "--config.wandb.mode=disabled",
        "--config.ckpt.async_save=false"])
  return str(w)


def test_training_writes_checkpoints_samples_and_metrics(trained):
  assert sorted(os.listdir(os.path.join(trained, "checkpoints")))[-1] == "4"
  with open(os.path.join(trained, "eval", "step_4.json")) as f:
    ev = json.load(f)
  c = ev["cross"]
  for k in ("id_to_out", "attr_to_out", "yaw_err_deg", "landmark_err_pct"):
    assert np.isfinite(c[k])
  assert c["disentanglement"] == pytest.approx(c["id_to_out"] - c["attr_to_out"])
  assert np.isfinite(ev["reconstruction"]["psnr_db"]) and "world_yaw_err_deg" in ev["world"]
  assert any(f.endswith(".png") for f in os.listdir(os.path.join(trained, "samples")))


def test_eval_cli_rescores_the_checkpoint_like_training_did(trained, tmp_path):
  out = tmp_path / "eval.json"
  _run(["-m", "jaxface.eval.id_mapping", "--workdir", trained, "--out", str(out)])
  again, at_training = json.loads(out.read_text()), json.load(open(os.path.join(trained, "eval", "step_4.json")))
  assert again["step"] == 4
  assert again["cross"]["id_to_out"] == pytest.approx(at_training["cross"]["id_to_out"], abs=1e-5)
  assert again["reconstruction"]["psnr_db"] == pytest.approx(at_training["reconstruction"]["psnr_db"], abs=1e-3)


def test_swap_cli_grid_single_and_interpolation(trained, tmp_path):
  grid = tmp_path / "grid.png"
  _run(["-m", "jaxface.swap", "--workdir", trained, "--generated", "0", "--num-identities", "2",
        "--num-attributes", "3", "--out", str(grid)])
  w, h = Image.open(grid).size
  assert w > 4 * 16 and h > 3 * 16  # sources and swaps, and the label bands naming each source
  # files: the generator's own images as aligned crops (--no-align); one pair -> one swapped image
  from jaxface.runs import generator_samples as gs
  cfg = json.load(open(os.path.join(trained, "config.json")))
  images, _, _ = gs.open_samples(cfg["samples"]["path"])
  a, b = tmp_path / "a.png", tmp_path / "b.png"
  Image.fromarray(np.asarray(images[0])).save(a)
  Image.fromarray(np.asarray(images[1])).save(b)
  one = tmp_path / "one.png"
  _run(["-m", "jaxface.swap", "--workdir", trained, "--identity", str(a), "--attributes", str(b), "--no-align",
        "--out", str(one)])
  assert Image.open(one).size == (16, 16)
  row = tmp_path / "row.png"
  _run(["-m", "jaxface.swap", "--workdir", trained, "--identity", str(a), str(b), "--attributes", str(b),
        "--no-align", "--interpolate", "5", "--out", str(row)])
  w, h = Image.open(row).size
  assert w > 5 * 16 and h > 16  # five steps, and the labels


def test_interpolation_ends_reproduce_the_swaps(trained):
  from jaxface import swap
  from jaxface.runs import id_mapping as id_mapping_run
  from jaxface.runs import generator_samples as gs
  config, state, _ = id_mapping_run.load_run(trained)
  images, _, _ = gs.open_samples(config.samples.path)
  a, b = np.asarray(images[:2]), np.asarray(images[2:3])
  row = swap.interpolate_w(config, state, a, np.repeat(b, 2, 0), 3)
  ends = swap.swap_images(config, state, a, np.repeat(b, 2, 0))
  assert np.abs(row[0].astype(int) - ends[0]).max() <= 1 and np.abs(row[-1].astype(int) - ends[1]).max() <= 1


def test_bad_input_is_a_clear_error(trained, tiny_sg2, tmp_path):
  blank = tmp_path / "blank.png"
  Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(blank)
  p = _run(["-m", "jaxface.swap", "--workdir", trained, "--identity", str(blank), "--attributes", str(blank),
            "--out", str(tmp_path / "x.png")], check=False)
  assert p.returncode == 2 and "no face" in p.stderr and "Traceback" not in p.stderr
  missing = _run(["-m", "jaxface.swap", "--workdir", trained, "--identity", str(tmp_path / "nope.png"),
                  "--attributes", str(blank), "--out", str(tmp_path / "x.png")], check=False)
  assert missing.returncode == 2 and "nope.png" in missing.stderr and "Traceback" not in missing.stderr
  # a mapper whose generator changed: edit the recorded fingerprint as if the generator had been retrained
  moved = tmp_path / "moved"
  import shutil
  shutil.copytree(trained, moved)
  cfg = json.load(open(moved / "config.json"))
  cfg["generator"]["fingerprint"] = "[0.0]"
  json.dump(cfg, open(moved / "config.json", "w"))
  p = _run(["-m", "jaxface.swap", "--workdir", str(moved), "--generated", "0", "--out", str(tmp_path / "x.png")],
           check=False)
  assert p.returncode == 2 and "not the one this mapper was trained against" in p.stderr
  from configs import id_mapping as cfg_lib
  from jaxface.train import id_mapping
  from jaxface.runs import id_mapping as id_mapping_run
  with pytest.raises(ConfigError, match="no generator"):
    id_mapping.prepare(cfg_lib.get_config("tiny"), log=None)
  bad = cfg_lib.get_config(f"tiny,gen={tiny_sg2}")
  bad.experts.landmarks = "dlib68"
  with pytest.raises(ConfigError, match="experts.landmarks"):
    id_mapping.prepare(bad, log=None)
