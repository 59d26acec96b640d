"""DiscoFaceGAN end to end on the tiny preset: expert bootstrap, all three phases, outputs, generation API/CLI,
evaluation; and, in-process on the same experts, that no gradient reaches anything frozen."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import ROOT, checkpoint_steps, env, metric_rows

TINY = "configs/disco.py:tiny"


@pytest.fixture(scope="module")
def tiny_run(tiny_disco):
  """The session's tiny DiscoFaceGAN training (tests/conftest.py), shared by the tests below."""
  return tiny_disco


def assert_experts_bootstrapped(run):
  cfg = json.load(open(run["workdir"] / "config.json"))
  cache = str(run["root"] / "cache" / "experts")
  for name in ("priors", "rnet", "idnet", "parser"):
    path = cfg["experts"][name]
    assert path.startswith(cache), (name, path)
    assert os.path.isfile(os.path.join(path, "config.json")), path
    assert f"training the {name} bootstrap" in run["log"]


def test_tiny_run_trains_all_phases_and_writes_outputs(tiny_run):
  assert_experts_bootstrapped(tiny_run)
  wd = tiny_run["workdir"]
  assert checkpoint_steps(wd)[-1] == 4
  rows = metric_rows(wd)
  assert [r["step"] for r in rows] == [1, 2, 3, 4]
  assert "imit_pix" in rows[0] and "imit_lm" not in rows[0]                     # pixel phase
  assert {"imit_lm", "imit_gamma", "imit_id", "imit_skin"} <= set(rows[1]) and "con_exp_warp" not in rows[1]
  assert {"con_exp_warp", "con_light_hair", "con_light_id", "con_light_lm", "adv_pairs"} <= set(rows[3])
  assert all(np.isfinite(v) for r in rows for k, v in r.items() if isinstance(v, float))
  samples = sorted(os.listdir(wd / "samples"))
  assert "samples_0000004.png" in samples
  for key in ("yaw", "pitch", "expression", "lighting", "identity"):
    assert f"sweep_{key}_0000004.png" in samples
  ev = json.load(open(wd / "eval" / "step_4.json"))
  for key in ("control", "control_floor", "control_render_floor", "identity", "identity_real", "identity_ratio", "disentanglement",
              "disentanglement_real", "spreads", "sweeps"):
    assert key in ev, key
  assert set(ev["disentanglement"]["ds"]) == {"id", "exp", "gamma", "angle"}
  assert ev["control"]["yaw_err_deg_median"] >= 0 and np.isfinite(ev["disentanglement"]["ds_mean"])
  low, high = ev["disentanglement"]["ds_mean_interval90"]
  assert np.isfinite(low) and low <= high
  assert os.path.isfile(wd / "eval" / "summary.txt")


def test_measuring_with_another_rnet(tiny_run):
  """Generator.measure_with swaps in another R-Net workdir's weights (eval.disco --rnet): the run's own R-Net
  workdir reads exactly as the frozen copy; anything else than an R-Net of that architecture is refused."""
  import jaxface
  from jaxface.eval.disco import Measure
  wd = tiny_run["workdir"]
  g = jaxface.Generator.load(str(wd))
  images = np.asarray(g.generate(g.lambdas(4, seed=3), noise=0))
  before = Measure(g).recon(images)["coeffs"]["angle"]
  rnet_dir = json.load(open(wd / "config.json"))["experts"]["rnet"]
  np.testing.assert_allclose(Measure(g.measure_with(rnet_dir)).recon(images)["coeffs"]["angle"], before, atol=1e-6)
  g.frozen["rnet"]["mean"] = np.zeros(3)  # another architecture's head
  with pytest.raises(jaxface.errors.ConfigError, match="architecture"):
    g.measure_with(rnet_dir)
  with pytest.raises(jaxface.errors.UserError):
    g.measure_with(str(wd))  # a DiscoFaceGAN workdir, not an R-Net


def test_measuring_with_another_identity_net(tiny_run):
  """measure_with(idnet_workdir=...) (eval.disco --idnet): the run's own identity-net workdir embeds exactly as the
  frozen copy; another architecture or a workdir of another trainer is refused."""
  import jaxface
  from jaxface.eval.disco import Measure
  wd = tiny_run["workdir"]
  g = jaxface.Generator.load(str(wd))
  images = np.asarray(g.generate(g.lambdas(4, seed=3), noise=0))
  before = Measure(g).embed(images)
  idnet_dir = json.load(open(wd / "config.json"))["experts"]["idnet"]
  np.testing.assert_allclose(Measure(g.measure_with(idnet_workdir=idnet_dir)).embed(images), before, atol=1e-6)
  g.frozen["idnet"] = {"params": {"other": np.zeros(3)}, "batch_stats": {}}
  with pytest.raises(jaxface.errors.ConfigError, match="architecture"):
    g.measure_with(idnet_workdir=idnet_dir)
  with pytest.raises(jaxface.errors.UserError):
    g.measure_with(idnet_workdir=json.load(open(wd / "config.json"))["experts"]["rnet"])  # an R-Net workdir


def test_stage1_checkpoint_resumes_into_stage2_reusing_cached_experts(tiny_run):
  """The released workflow: train stage 1, then resume that checkpoint with stage 2 on. Stage 2 needs the parser,
  which the stage-1 state never held: frozen experts are re-read from their source on resume, not restored."""
  wd = tiny_run["root"] / "staged"
  cmd = [a if a != str(tiny_run["workdir"]) else str(wd) for a in tiny_run["cmd"]]
  first = subprocess.run(cmd + ["--config.total_steps=2"], cwd=ROOT, env=tiny_run["env"], capture_output=True,
                         text=True, timeout=600)
  assert first.returncode == 0, first.stderr[-3000:]
  assert json.load(open(wd / "config.json"))["experts"]["parser"] == ""  # stage 2 not reached: no parser
  second = subprocess.run(cmd, cwd=ROOT, env=tiny_run["env"], capture_output=True, text=True, timeout=600)
  assert second.returncode == 0, second.stderr[-3000:]
  out = second.stdout + second.stderr
  assert "bootstrap" not in out and "resumed from" in out  # cached experts (the fixture trained them)
  assert checkpoint_steps(wd)[-1] == 4
  assert "con_light_hair" in metric_rows(wd)[-1]


def test_generate_cli_and_python_api(tiny_run):
  wd, out = tiny_run["workdir"], tiny_run["root"] / "grid.png"
  cmd = [sys.executable, "-m", "jaxface.generate", "--workdir", str(wd), "--out", str(out), "--rows", "2",
         "--vary", "yaw=-30:30:3", "--set", "pitch=5,expression=2,smile_l=0.5"]
  proc = subprocess.run(cmd, cwd=ROOT, env=tiny_run["env"], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  from PIL import Image
  w, h = Image.open(out).size
  assert w > 3 * 16 and h > 2 * 16  # 2 identities x 3 yaws, and the labels
  bad = subprocess.run(cmd[:-4] + ["--vary", "smle=0:1:3"], cwd=ROOT, env=tiny_run["env"], capture_output=True,
                       text=True, timeout=300)
  assert bad.returncode == 2 and "unknown factor 'smle'" in bad.stderr and "smile_l" in bad.stderr

  import jaxface
  g = jaxface.Generator.load(str(wd))
  img = g.sample(identity=3, expression=0, pose=[0, 30, 0], lighting=5)
  assert img.shape == (1, 16, 16, 3) and img.dtype == np.uint8
  blocks = g.lambdas(2, seed=1, pose=[[0, 10, 0], [0, -10, 0]])
  np.testing.assert_allclose(np.rad2deg(blocks["angle"][:, 1]), [10, -10], atol=1e-4)
  # The same identity seed gives the same identity whatever the other factors' seeds.
  a, b = g.lambdas(1, seed=7, identity=3), g.lambdas(1, seed=8, identity=3)
  np.testing.assert_array_equal(a["id"], b["id"])
  assert not np.array_equal(a["exp"], b["exp"])
  with pytest.raises(jaxface.errors.ConfigError, match="pose"):
    g.lambdas(1, pose=[1.0, 2.0])

  # Self-contained: a copy of the run whose expert workdirs no longer exist still loads and generates.
  import shutil
  moved = tiny_run["root"] / "moved"
  shutil.copytree(wd, moved)
  cfg = json.load(open(moved / "config.json"))
  assert set(json.loads(cfg["experts"]["configs"])) == {"priors", "rnet", "idnet", "parser"}
  for name in ("priors", "rnet", "idnet", "parser"):
    cfg["experts"][name] = "/nonexistent/" + name
  json.dump(cfg, open(moved / "config.json", "w"))
  np.testing.assert_array_equal(jaxface.Generator.load(str(moved)).sample(identity=3, pose=[0, 30, 0]),
                                g.sample(identity=3, pose=[0, 30, 0]))


def test_attribute_preserving_truncation_matches_its_definition():
  from jaxface.runs.disco_generator import attribute_preserving_ws
  rng = np.random.default_rng(0)
  w, w_id, w_bar = rng.normal(size=(2, 5)), rng.normal(size=(2, 5)), rng.normal(size=5)
  ws = np.asarray(attribute_preserving_ws(jnp.asarray(w), jnp.asarray(w_id), jnp.asarray(w_bar), 0.7, 3, 6))
  assert ws.shape == (2, 6, 5)
  for l in range(6):
    want = w + 0.3 * (w_bar - w_id) if l < 3 else w
    np.testing.assert_allclose(ws[:, l], want, rtol=1e-6)
  same = attribute_preserving_ws(jnp.asarray(w), jnp.asarray(w_id), jnp.asarray(w_bar), 1.0, 3, 6)
  np.testing.assert_allclose(np.asarray(same), np.repeat(w[:, None], 6, 1), rtol=1e-6)


def test_no_gradient_reaches_frozen_experts_priors_or_render_targets(tiny_run, monkeypatch):
  """d loss_G / d state["frozen"] is exactly zero in stage 2 (imitative + contrastive terms: every expert, the
  priors and the render targets are used), although loss_G depends on the frozen values
  (perturbing R-Net's parameters changes it) and the generator does get a gradient."""
  monkeypatch.setenv("JAXFACE_CACHE", str(tiny_run["root"] / "cache"))
  from jaxface import config as config_lib
  from jaxface.train import disco
  config = config_lib.build(os.path.join(ROOT, TINY), [("wandb.mode", "disabled")])
  config = disco.prepare(config)
  state = jax.jit(lambda k: disco.init_state(config, k))(jax.random.key(0))
  state["frozen"] = jax.tree.map(jnp.asarray, disco.constants(config)["frozen"])
  batch = next(iter(disco.make_data(config)))
  batch = jax.tree.map(jnp.asarray, batch)
  step = disco.train_step(config)
  rng = jax.random.key(1)
  phase = (2, False, False)

  def loss(frozen, g_params):
    s = dict(state, frozen=frozen, G=dict(state["G"], params=g_params))
    return step(s, batch, rng, phase)[1]["loss_G"]
  # One compiled program serves both calls below (same shapes): compiling the step's second derivative is the
  # expensive part, so the perturbed-R-Net value comes from the same program instead of eager steps.
  value_and_grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), allow_int=True))
  base, (g_frozen, g_gen) = value_and_grads(state["frozen"], state["G"]["params"])
  floats = [x for x in jax.tree.leaves(g_frozen) if jnp.issubdtype(x.dtype, jnp.floating)]
  assert len(floats) > 20 and all(float(jnp.abs(x).max()) == 0.0 for x in floats)
  assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g_gen)) > 0
  # loss_G really reads the frozen R-Net: the zero gradient comes from stop_gradient, not from independence.
  bumped = dict(state["frozen"], rnet=jax.tree.map(
      lambda x: x * 1.5 if jnp.issubdtype(x.dtype, jnp.floating) else x, state["frozen"]["rnet"]))
  assert abs(float(value_and_grads(bumped, state["G"]["params"])[0]) - float(base)) > 1e-6
