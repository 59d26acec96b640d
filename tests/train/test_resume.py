"""A tiny run leaves its outputs; SIGKILL + rerun == uninterrupted; SIGTERM saves and exits 0.

The runs go one after another so that all but the first find their compiled step in the persistent cache.
"""

import glob
import random
import signal
import subprocess
import time

import jax
import numpy as np

from tests.train import helpers

RUN = ["--config.total_steps=16", "--config.ckpt.every_steps=4", "--config.log.samples_every_steps=8"]


def _wait_for_step(proc, workdir, step, timeout=900):
  start = time.time()
  while time.time() - start < timeout:
    rows = helpers.metric_rows(workdir)
    if rows and rows[-1]["step"] >= step:
      return rows[-1]["step"]
    if proc.poll() is not None:
      raise AssertionError(f"run ended (rc={proc.returncode}) before step {step}:\n{proc.stdout.read()}")
    time.sleep(0.01)
  raise AssertionError(f"step {step} not reached in {timeout}s")


def _popen(workdir, *overrides):
  return subprocess.Popen(helpers.main_cmd(workdir, *RUN, *overrides), cwd=helpers.ROOT, env=helpers.env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _assert_trees_equal(a, b):
  leaves_a = jax.tree_util.tree_leaves_with_path(a)
  leaves_b = jax.tree_util.tree_leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for (path, x), y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def test_outputs_kill_resume_and_sigterm(tmp_path):
  full, killed, termed = tmp_path / "full", tmp_path / "killed", tmp_path / "termed"

  # The uninterrupted run, with an offline W&B run. It leaves checkpoints, metrics.jsonl, sample PNGs, W&B.
  p_full = _popen(full, "--config.wandb.mode=offline")
  out_full = p_full.communicate(timeout=900)[0]
  assert p_full.returncode == 0, out_full
  assert helpers.checkpoint_steps(full) == [8, 12, 16]  # keep=3 newest
  rows = helpers.metric_rows(full)
  assert [r["step"] for r in rows] == list(range(1, 17))
  assert all(np.isfinite(r["loss_G"]) and np.isfinite(r["loss_D"]) for r in rows)
  assert "r1_penalty" in rows[1] and "pl_penalty" in rows[1] and "img_per_s" in rows[-1]
  assert len(glob.glob(str(full / "samples" / "samples_*.png"))) == 2  # steps 8 and 16
  assert glob.glob(str(full / "wandb" / "offline-run-*"))
  assert "kimg" in out_full and "img/s" in out_full and "ETA" in out_full

  # SIGKILL at a random step; the same command resumes from the last checkpoint and ends identical.
  kill_at = random.Random().randint(5, 13)
  p_kill = _popen(killed)
  reached = _wait_for_step(p_kill, killed, kill_at)
  p_kill.send_signal(signal.SIGKILL)
  p_kill.wait()
  before = helpers.checkpoint_steps(killed)
  assert before and before[-1] < 16, f"run finished before the kill (kill_at={kill_at}, reached={reached})"
  resumed = subprocess.run(helpers.main_cmd(killed, *RUN), cwd=helpers.ROOT, env=helpers.env(), capture_output=True,
                           text=True, timeout=900)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert f"resumed from {killed / 'checkpoints'}/{before[-1]}" in resumed.stdout
  _assert_trees_equal(helpers.load_params(full, 16), helpers.load_params(killed, 16))
  rows_killed = {r["step"]: r for r in helpers.metric_rows(killed)}
  for r in rows:  # the same data order and randomness: every step's losses match too
    assert rows_killed[r["step"]]["loss_D"] == r["loss_D"], (r["step"], kill_at)

  # SIGTERM saves a checkpoint at the current step and exits 0.
  p_term = _popen(termed, "--config.total_steps=100000", "--config.ckpt.every_steps=100000")
  _wait_for_step(p_term, termed, 3)
  p_term.send_signal(signal.SIGTERM)
  out = p_term.communicate(timeout=300)[0]
  assert p_term.returncode == 0, out
  steps = helpers.checkpoint_steps(termed)
  assert len(steps) == 1 and 3 <= steps[0] < 100000, steps
  assert f"preempted: saved checkpoint at step {steps[0]}" in out
