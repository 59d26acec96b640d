"""The DiscoFaceGAN step benchmark (jaxface/bench/disco.py): its plain step really is plain, its compile timings
read the persistent cache only where they should, and one tiny run prints the table and records sane rows."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from jaxface import config as config_lib
from jaxface.bench import common
from jaxface.bench import disco as bench
from jaxface.losses import imitative
from jaxface.train import disco
from jaxface.runs import disco_expert_configs as dxc
from jaxface.runs import expert_cache
from tests.train import helpers


def _expert_called(*args):
  raise AssertionError("the plain step called a frozen expert")


def assert_row(row):
  assert row["bench"] == "disco"
  assert row["img_per_s"] > 0 and row["plain_img_per_s"] > 0, row
  assert 0 < row["ratio"] <= 2, row
  # The parts are timed apart, each jitted alone (the bench's docstring), so their sum can pass the fused step's
  # time, most under load; twice the step would mean something is timed that the step does not do.
  assert 0 < row["share"] < 2, row
  assert row["render_ms"] > 0 and row["experts_ms"] > 0, row
  assert row["config"]["preset"] == "tiny" and row["config"]["resolution"] == 16 and row["config"]["batch_size"] == 4
  # MFU as jaxface.bench.train reports it: the full step's FLOPs (XLA's cost analysis) against the CPU's measured
  # roofline. A tiny step is far from the peak; 100% or more would mean the FLOPs or the time are miscounted.
  assert row["gflops_per_img"] > 0 and row["peak_gflops"] > 0 and row["peak_source"].startswith("measured"), row
  assert 0 < row["mfu_pct"] < 100, row
  assert row["mfu_pct"] == pytest.approx(100 * row["gflops_per_img"] * row["img_per_s"] / row["peak_gflops"]), row
  # The cached compile loads what the cold one had to build: it must be the faster.
  assert 0 < row["compile_s_cached"] < row["compile_s"], row


def test_plain_config_calls_no_expert_and_makes_no_pairs():
  config = config_lib.build("configs/disco.py:tiny")
  assert disco._pair_kinds(config) == ("exp", "gamma")
  plain = bench.plain_config(config)
  assert disco._pair_kinds(plain) == ()
  assert config.loss.w_lm > 0  # the full config is left as it was
  fake = jnp.zeros((2, 16, 16, 3))
  targets = dict(image=fake, mask=jnp.ones((2, 16, 16)), landmarks=jnp.zeros((2, 68, 2)), gamma=jnp.zeros((2, 27)))
  for stage in (1, 2):
    imit_w, con_w = disco._loss_weights(plain, stage)
    for low_res in (False, True):
      out = imitative.imitative_losses(fake, targets, recon_fn=_expert_called, id_fn=_expert_called,
                                       weights=imit_w, low_res=low_res)
      assert set(out) == {"total"} and float(out["total"]) == 0.0
    assert all(con_w[k] == 0 for k in ("w_exp_warp", "w_gamma_change", "w_pose", "w_id_contrast"))


def test_bootstrap_steps_shortens_every_expert():
  config = config_lib.build("configs/disco.py")
  before = {name: expert_cache.bootstrap_config(config, name).total_steps for name in dxc.NAMES}
  bench.bootstrap_steps(config, 3)
  for name in dxc.NAMES:
    cfg = expert_cache.bootstrap_config(config, name)
    assert cfg.total_steps == 3 and cfg.ckpt.every_steps == 3, name
    assert before[name] > 3, name


def test_compile_seconds_reads_only_the_fresh_cache(tmp_path):
  fn = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
  x = jnp.ones((8, 8))
  events = []
  listener = lambda event, **kwargs: events.append(event)  # noqa: E731
  with common.persistent_cache(str(tmp_path)):  # stands for the process's own cache, already holding the program
    jax.clear_caches()
    fn.lower(x).compile()
    assert os.listdir(tmp_path)
    own = {k: getattr(jax.config, k) for k in common._CACHE_OPTIONS}
    jax.monitoring.register_event_listener(listener)
    try:
      cold, cached = common.compile_seconds(fn, x)
    finally:
      jax.monitoring.unregister_event_listener(listener)
    assert {k: getattr(jax.config, k) for k in common._CACHE_OPTIONS} == own
  # One hit, the cached compile's from the bench's fresh cache: the cold compile read neither that nor the process's.
  assert events.count("/jax/compilation_cache/cache_hits") == 1, events
  assert cold > 0 and cached is not None and cached > 0


def test_bench_disco_tiny_records_rows(tmp_path):
  results = tmp_path / "results.jsonl"
  env = helpers.env(devices=2)
  env["JAXFACE_BENCH_RESULTS"] = str(results)
  proc = subprocess.run([sys.executable, "-m", "jaxface.bench.disco", "--config", "configs/disco.py:tiny",
                         "--steps", "3", "--warmup", "1"], cwd=helpers.ROOT, env=env, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  assert "plain_img_per_s" in proc.stdout and "share" in proc.stdout
  assert "mfu_pct" in proc.stdout and "compile_s_cached" in proc.stdout and "GFLOP/s (measured" in proc.stdout
  rows = [json.loads(line) for line in results.read_text().splitlines()]
  assert [r["config"]["phase"] for r in rows] == ["(1, False, True)", "(2, False, True)"]
  for row in rows:
    assert_row(row)
  assert rows[0]["pair_images"] == 0 and rows[1]["pair_images"] == 4  # 1 pair x (A, B) x (exp, gamma)
  assert rows[1]["plain_shared"]  # all weights 0: one plain program for both stages
