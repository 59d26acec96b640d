"""Acceptance 2, 4, 5: a tiny run leaves its outputs; SIGKILL + rerun == uninterrupted; SIGTERM saves and exits 0."""

import glob
import os
import random
import signal
import subprocess
import time

import jax
import numpy as np

from tests.train import helpers


def _wait_for_step(proc, workdir, step, timeout=600):
  start = time.time()
  while time.time() - start < timeout:
    rows = helpers.metric_rows(workdir)
    if rows and rows[-1]["step"] >= step:
      return rows[-1]["step"]
    if proc.poll() is not None:
      raise AssertionError(f"run ended (rc={proc.returncode}) before step {step}:\n{proc.stdout.read()}")
    time.sleep(0.05)
  raise AssertionError(f"step {step} not reached in {timeout}s")


def _assert_trees_equal(a, b):
  leaves_a = jax.tree_util.tree_leaves_with_path(a)
  leaves_b = jax.tree_util.tree_leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for (path, x), y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def test_outputs_kill_resume_and_sigterm(tmp_path):
  full, killed, termed = tmp_path / "full", tmp_path / "killed", tmp_path / "termed"
  # The uninterrupted run (with an offline W&B run) and the run we kill go side by side.
  p_full = subprocess.Popen(helpers.main_cmd(full, "--config.wandb.mode=offline"), cwd=helpers.ROOT,
                            env=helpers.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  kill_at = random.Random().randint(3, 5)  # a random step; checkpoints land every 2 steps
  p_kill = subprocess.Popen(helpers.main_cmd(killed), cwd=helpers.ROOT, env=helpers.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
  reached = _wait_for_step(p_kill, killed, kill_at)
  p_kill.send_signal(signal.SIGKILL)
  p_kill.wait()
  out_full = p_full.communicate(timeout=600)[0]
  assert p_full.returncode == 0, out_full

  # Acceptance 2: checkpoints, metrics.jsonl, sample PNGs and an offline W&B run.
  assert helpers.checkpoint_steps(full)[-1] == 6
  rows = helpers.metric_rows(full)
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
  assert all(np.isfinite(r["loss_G"]) and np.isfinite(r["loss_D"]) for r in rows)
  assert "r1_penalty" in rows[1] and "pl_penalty" in rows[1] and "img_per_s" in rows[-1]
  assert len(glob.glob(str(full / "samples" / "samples_*.png"))) == 2  # steps 3 and 6
  assert glob.glob(str(full / "wandb" / "offline-run-*"))
  assert "kimg" in out_full and "img/s" in out_full and "ETA" in out_full

  # Acceptance 4: rerunning the killed command resumes from its last checkpoint and ends identical.
  before = helpers.checkpoint_steps(killed)
  assert before and before[-1] <= reached, (before, reached)
  resumed = helpers.run_main(killed)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert f"resumed from" in resumed.stdout
  _assert_trees_equal(helpers.load_params(full, 6), helpers.load_params(killed, 6))
  rows_killed = {r["step"]: r for r in helpers.metric_rows(killed)}
  for r in rows:  # the same data order and randomness: per-step losses match too
    assert abs(rows_killed[r["step"]]["loss_D"] - r["loss_D"]) < 1e-6, (r["step"], kill_at)

  # Acceptance 5: SIGTERM saves a checkpoint at the current step and exits 0.
  p_term = subprocess.Popen(helpers.main_cmd(termed, "--config.total_steps=1000", "--config.ckpt.every_steps=1000"),
                            cwd=helpers.ROOT, env=helpers.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
  _wait_for_step(p_term, termed, 2)
  p_term.send_signal(signal.SIGTERM)
  out = p_term.communicate(timeout=300)[0]
  assert p_term.returncode == 0, out
  steps = helpers.checkpoint_steps(termed)
  assert len(steps) == 1 and 2 <= steps[0] < 1000, steps
  assert "preempted: saved checkpoint at step" in out
