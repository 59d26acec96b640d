"""launch/local_multiprocess.sh 2 trains a few steps; its checkpoint restores in a 1-process run."""

import os
import subprocess
import sys

from tests.train import helpers


def test_two_processes_then_resume_in_one(tmp_path):
  # Step 1 runs no lazy regularizer: one small program per process to compile.
  cmd = ["bash", "launch/local_multiprocess.sh", "2"] + helpers.main_cmd(
      tmp_path, "--config.total_steps=1", "--config.log.samples_every_steps=100")
  env = helpers.env()
  env["JAX_NUM_CPU_DEVICES"] = "2"
  result = subprocess.run(cmd, cwd=helpers.ROOT, env=env, capture_output=True, text=True, timeout=900)
  out = result.stdout + result.stderr
  assert result.returncode == 0, out
  assert "[p0] devices: 4 (cpu), processes: 2" in out, out
  assert helpers.checkpoint_steps(tmp_path) == [1]
  data_files = sorted(f for f in os.listdir(tmp_path / "checkpoints" / "1" / "data") if f.endswith(".json"))
  assert data_files == ["process_0-of-2.json", "process_1-of-2.json"], data_files

  resumed = subprocess.run(helpers.main_cmd(tmp_path, "--config.total_steps=2", "--config.log.samples_every_steps=100"),
                           cwd=helpers.ROOT, env=helpers.env(devices=2), capture_output=True, text=True, timeout=900)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert "resumed from" in resumed.stdout and "data order restarts" in resumed.stdout
  assert helpers.checkpoint_steps(tmp_path)[-1] == 2
