"""The pieces of the DiscoFaceGAN recipe that carry the imitation signal, each against an independent reference:
render targets in the reals' display space, λ standardised before the mapping, and exported generators that
reproduce their workdir (exactly for G, within a measured tolerance for the int8-stored experts)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import ROOT

TINY = "configs/disco.py:tiny"


@pytest.fixture(scope="module")
def prepared(tiny_disco):
  """The tiny preset's config with the session's bootstrapped experts, and its frozen pytree."""
  old = os.environ.get("JAXFACE_CACHE")
  os.environ["JAXFACE_CACHE"] = str(tiny_disco["root"] / "cache")
  try:
    from jaxface import config as config_lib
    from jaxface.train import disco
    config = disco.prepare(config_lib.build(os.path.join(ROOT, TINY), [("wandb.mode", "disabled")]))
    frozen = jax.tree.map(jnp.asarray, disco.constants(config)["frozen"])
  finally:
    if old is None:
      os.environ.pop("JAXFACE_CACHE")
    else:
      os.environ["JAXFACE_CACHE"] = old
  return config, frozen


def test_render_targets_are_in_the_worlds_display_space(prepared):
  """Synthetic world reals are linear shading through gamma 1/2.2: the imitation targets must be too (numpy
  reference on the raw linear render), and black outside the face."""
  from jaxface.render import render as render_lib
  from jaxface.runs import disco as disco_run
  from jaxface.runs import disco_experts as dx
  config, frozen = prepared
  experts = dx.functions(config)
  blocks = experts.decode(frozen, disco_run.sample_z(experts, jax.random.key(3), 4))
  res = config.model.resolution
  raw = jax.vmap(lambda c: render_lib.render(frozen["face"], c, experts.camera(res), res))(dx.full_coeffs(blocks))
  got = np.asarray(disco_run.render_targets(experts, frozen, blocks, res)["image"])
  linear, inside = np.asarray(raw["image"], np.float64), np.asarray(raw["mask"])[..., None] > 0
  want = np.where(inside, np.clip(linear, 1e-4, 1.0) ** (1 / 2.2), 0.0)
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert inside.any() and (got[np.broadcast_to(inside, got.shape)] > linear[np.broadcast_to(inside, got.shape)]
                           - 1e-6).all()  # gamma brightens mid-tones
  assert experts.display(jnp.asarray(0.25)) == pytest.approx(0.25 ** (1 / 2.2), rel=1e-6)


def test_lambda_is_standardised_before_the_mapping(prepared):
  """With model.lambda_norm the generator sees every λ dimension at zero mean and unit spread (a fresh sample of
  the priors, not the one the statistics came from); ε passes unchanged. Without statistics, λ is raw."""
  from jaxface.runs import disco as disco_run
  from jaxface.runs import disco_experts as dx
  config, frozen = prepared
  assert config.model.lambda_norm and "lambda_stats" in frozen
  experts = dx.functions(config)
  lam = dx.flat_lambda(experts.decode(frozen, disco_run.sample_z(experts, jax.random.key(99), 8192)))
  eps = jax.random.normal(jax.random.key(5), (8192, config.model.noise_dim))
  n = lam.shape[1]
  spread = np.asarray(lam).std(0) > 1e-5  # dimensions the prior actually varies
  by_dim = dict(frozen, lambda_stats=jax.tree.map(jnp.asarray, dx.lambda_stats(config, frozen, "dim")))
  x = np.asarray(dx.generator_input(by_dim, lam, eps))
  np.testing.assert_allclose(x[:, :n].mean(0), 0.0, atol=0.1)
  np.testing.assert_allclose(x[:, :n].std(0)[spread], 1.0, atol=0.1)
  np.testing.assert_array_equal(x[:, n:], np.asarray(eps))
  # "factor" (the preset's): every factor (identity = id + tex, expression, pose, light) carries the same total
  # variance.
  assert config.model.lambda_norm == "factor"
  x = np.asarray(dx.generator_input(frozen, lam, eps))
  np.testing.assert_allclose(x[:, :n].mean(0), 0.0, atol=0.1)
  blocks = experts.decode(frozen, disco_run.sample_z(experts, jax.random.key(1), 2))
  sizes = [blocks["id"].shape[1] + blocks["tex"].shape[1]] + [blocks[b].shape[1] for b in ("exp", "angle", "gamma")]
  bounds = np.cumsum([0] + sizes)
  energy = [float(np.asarray(x[:, a:b]).var(0).sum()) for a, b in zip(bounds[:-1], bounds[1:])]
  np.testing.assert_allclose(energy, n / 4, rtol=0.1)
  raw = dx.generator_input({k: v for k, v in frozen.items() if k != "lambda_stats"}, lam, eps)
  np.testing.assert_array_equal(np.asarray(raw[:, :n]), np.asarray(lam))


def test_pose_difference_loss_matches_a_numpy_reference():
  """mean over the A/B pairs' pixels of ||(fake_A - fake_B) - (render_A - render_B)||; no gradient to renders."""
  from jaxface.train import disco
  rng = np.random.default_rng(0)
  fake, render = rng.normal(size=(6, 5, 5, 3)), rng.normal(size=(6, 5, 5, 3))
  d = (fake[:3] - fake[3:]) - (render[:3] - render[3:])
  want = np.mean(np.sqrt(np.sum(d ** 2, -1) + 1e-8))
  got = disco.pose_difference_loss(jnp.asarray(fake, jnp.float32), jnp.asarray(render, jnp.float32))
  assert float(got) == pytest.approx(want, rel=1e-5)
  # What A and B share cancels: the same offset added to both halves changes nothing.
  shifted = fake + np.concatenate([np.ones((3, 5, 5, 3)), np.ones((3, 5, 5, 3))]) * 0.7
  assert float(disco.pose_difference_loss(jnp.asarray(shifted, jnp.float32), jnp.asarray(render, jnp.float32))) \
      == pytest.approx(want, rel=1e-5)
  g = jax.grad(lambda r: disco.pose_difference_loss(jnp.asarray(fake, jnp.float32), r))(jnp.asarray(render,
                                                                                                    jnp.float32))
  assert float(jnp.abs(g).max()) == 0.0
  # With the renders' masks: only pixels where A and B agree (face in both or background in both) count.
  mask = rng.uniform(size=(6, 5, 5)) > 0.5
  agree = (mask[:3] & mask[3:]) | (~mask[:3] & ~mask[3:])
  want_masked = np.sum(agree * np.sqrt(np.sum(d ** 2, -1) + 1e-8)) / np.sum(agree)
  got_masked = disco.pose_difference_loss(jnp.asarray(fake, jnp.float32), jnp.asarray(render, jnp.float32),
                                          jnp.asarray(mask))
  assert float(got_masked) == pytest.approx(want_masked, rel=1e-5) and abs(want_masked - want) > 1e-3
  g = jax.grad(lambda f: disco.pose_difference_loss(f, jnp.asarray(render, jnp.float32), jnp.asarray(mask)))(
      jnp.asarray(fake, jnp.float32))
  assert float(jnp.abs(g[:3][~agree]).max()) == 0.0  # a face-vs-black pixel pushes nothing


def test_exported_generator_matches_its_workdir(tiny_disco, tmp_path):
  """`python -m jaxface.pretrained` writes config.json + weights.npz; Generator.load of that folder gives the
  workdir's images bit for bit, with no Orbax checkpoint and no expert workdir."""
  import subprocess
  import sys
  import jaxface
  out = tmp_path / "export"
  proc = subprocess.run([sys.executable, "-m", "jaxface.pretrained", "--workdir", str(tiny_disco["workdir"]),
                         "--out", str(out)], cwd=ROOT, env=tiny_disco["env"], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert sorted(os.listdir(out)) == ["config.json", "weights.npz"]
  a = jaxface.Generator.load(str(tiny_disco["workdir"]))
  b = jaxface.Generator.load(str(out))
  assert b.step == a.step
  np.testing.assert_array_equal(b.sample(identity=2, pose=[0, 25, 0], n=2), a.sample(identity=2, pose=[0, 25, 0],
                                                                                     n=2))
  assert not any(k.startswith("frozen/parser/") for k in np.load(out / "weights.npz").files)
  bad = subprocess.run([sys.executable, "-m", "jaxface.pretrained", "--workdir", str(tmp_path / "nothing"),
                        "--out", str(tmp_path / "x")], cwd=ROOT, env=tiny_disco["env"], capture_output=True,
                       text=True, timeout=300)
  assert bad.returncode == 2 and "config.json" in bad.stderr and "Traceback" not in bad.stderr


def test_export_can_bundle_another_rnet(tiny_disco, tmp_path, monkeypatch):
  """--rnet bundles that workdir's R-Net instead of the run's (G unchanged, recorded in config.json); an R-Net
  of another architecture is refused before anything is written."""
  import json
  from jaxface import pretrained
  from jaxface.convert import flatten
  from jaxface.errors import CheckpointError
  from jaxface.runs import disco_experts
  from jaxface.runs.workdir import read_run
  rnet_dir = json.load(open(tiny_disco["workdir"] / "config.json"))["experts"]["rnet"]
  real = disco_experts.rnet_frozen
  shifted = lambda w: jax.tree.map(lambda a: np.asarray(a, np.float32) + 1.0, real(w))  # noqa: E731
  monkeypatch.setattr(disco_experts, "rnet_frozen", shifted)
  out = tmp_path / "swapped"
  pretrained.export(str(tiny_disco["workdir"]), str(out), rnet=rnet_dir)
  _, state, _ = pretrained.read(str(out))
  got, want = flatten(state["frozen"]["rnet"]), flatten(shifted(rnet_dir))
  assert sorted(got) == sorted(want)
  for k, v in want.items():  # large kernels are stored int8, the rest exactly
    stored = pretrained.dequantize(*pretrained.quantize(v)) if v.ndim >= 2 and v.size >= pretrained.QUANT_MIN else v
    np.testing.assert_allclose(got[k], stored, rtol=1e-6, err_msg=k)
  _, run_state, _ = read_run(str(tiny_disco["workdir"]), trainer="disco")
  exported_g = flatten(state["G_ema"])
  for k, v in flatten(run_state["G_ema"]).items():
    np.testing.assert_array_equal(exported_g[k], v)
  assert json.load(open(out / "config.json"))["exported_from"]["rnet"] == rnet_dir
  monkeypatch.setattr(disco_experts, "rnet_frozen", lambda w: {"mean": np.zeros(3)})
  with pytest.raises(CheckpointError, match="architecture"):
    pretrained.export(str(tiny_disco["workdir"]), str(tmp_path / "refused"), rnet=rnet_dir)
  assert not (tmp_path / "refused").exists()


def test_int8_kernels_against_a_numpy_reference():
  """Per-output-channel symmetric int8: every entry within half a step of its channel's scale, the channel's
  largest magnitude exact, an all-zero channel stays zero."""
  from jaxface import pretrained
  rng = np.random.default_rng(0)
  a = (rng.normal(size=(3, 3, 8, 5)) * np.array([1e-3, 0.1, 1.0, 30.0, 0.0])).astype(np.float32)
  q, scale = pretrained.quantize(a)
  assert q.dtype == np.int8 and scale.shape == (5,) and np.abs(q).max() <= 127
  want_scale = np.abs(a).reshape(-1, 5).max(0) / 127.0
  np.testing.assert_allclose(scale[:4], want_scale[:4], rtol=1e-6)
  back = pretrained.dequantize(q, scale)
  assert np.all(np.abs(back - a) <= scale / 2 * (1 + 1e-5) + 1e-12)
  np.testing.assert_allclose(np.abs(back).reshape(-1, 5).max(0)[:4], np.abs(a).reshape(-1, 5).max(0)[:4],
                             rtol=1e-6)
  assert np.all(back[..., 4] == 0)


def test_int8_experts_read_what_float32_reads(tiny_disco, tmp_path, monkeypatch):
  """With every expert kernel stored int8 (threshold lowered so the tiny experts have some), G is still exact
  for explicit λ, and R-Net's angles and the identity embedding of the same images barely move."""
  import jaxface
  from jaxface import pretrained
  monkeypatch.setattr(pretrained, "QUANT_MIN", 64)
  out = tmp_path / "export_q8"
  pretrained.export(str(tiny_disco["workdir"]), str(out))
  stored = np.load(out / "weights.npz").files
  assert any(k.startswith("frozen/rnet/") and k.endswith(pretrained.Q8) for k in stored)
  assert any(k.startswith("frozen/idnet/") and k.endswith(pretrained.Q8) for k in stored)
  assert not any(k.startswith("G_ema/") and k.endswith(pretrained.Q8) for k in stored)
  a = jaxface.Generator.load(str(tiny_disco["workdir"]))
  b = jaxface.Generator.load(str(out))
  blocks = a.random_blocks(5, 4)
  img_a, img_b = np.asarray(a.generate(blocks, 1, psi=1.0)), np.asarray(b.generate(blocks, 1, psi=1.0))
  np.testing.assert_array_equal(img_b, img_a)
  x = jnp.asarray(img_a)
  ang_a = np.rad2deg(np.asarray(a.experts.recon(a.frozen, x)["coeffs"]["angle"]))
  ang_b = np.rad2deg(np.asarray(b.experts.recon(b.frozen, x)["coeffs"]["angle"]))
  assert np.abs(ang_b - ang_a).max() < 1.0, np.abs(ang_b - ang_a).max()
  assert not np.allclose(ang_b, ang_a, atol=0, rtol=0)  # the int8 path was taken
  cos = np.sum(np.asarray(a.experts.identity(a.frozen, x)) * np.asarray(b.experts.identity(b.frozen, x)), -1)
  assert cos.min() > 0.99, cos


def test_an_interrupted_expert_bootstrap_stops_the_run(tmp_path, monkeypatch):
  """A SIGTERM inside an expert's bootstrap ends that training early with a checkpoint (the loop's preemption
  path); the generator run must stop with a clear error instead of training against an expert cut short, and a
  finished bootstrap is taken as is."""
  from jaxface import config as config_lib
  from jaxface.errors import ConfigError
  from jaxface.train import experts as bootstrap
  from jaxface.runs import expert_cache
  from jaxface.train import loop
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path / "cache"))
  config = config_lib.build(os.path.join(ROOT, TINY), [("wandb.mode", "disabled")])
  cfg = expert_cache.bootstrap_config(config, "rnet")

  def preempted(cfg, workdir):  # what a SIGTERM at step 1 leaves: config.json and checkpoint 1
    os.makedirs(os.path.join(workdir, "checkpoints", "1"))
    open(os.path.join(workdir, "config.json"), "w").write("{}")

  monkeypatch.setattr(loop, "train", preempted)
  with pytest.raises(ConfigError, match="rnet expert's bootstrap .* stopped before its 2 steps"):
    bootstrap.trained_bootstrap(cfg, "rnet", "configs/rnet.py:small")

  def finishes(cfg, workdir):
    os.makedirs(os.path.join(workdir, "checkpoints", str(cfg.total_steps)))

  monkeypatch.setattr(loop, "train", finishes)
  workdir = bootstrap.trained_bootstrap(cfg, "rnet", "configs/rnet.py:small")
  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(cfg.total_steps)))


def test_bad_pixel_mask_settings_are_refused_before_training():
  from jaxface import config as config_lib
  from jaxface.errors import ConfigError
  from jaxface.train import disco
  for key, value, name in (("loss.pix_diff_mask", "face", "pix_diff_mask"), ("loss.pix_mask", "frame", "pix_mask")):
    with pytest.raises(ConfigError, match=name):
      disco.validate(config_lib.build("configs/disco.py:tiny", [(key, value)]))
