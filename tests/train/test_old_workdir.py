"""A DiscoFaceGAN workdir written by an earlier jaxface still loads, resumes and evaluates.

tests/fixtures/disco_tiny_old is a `configs/disco.py:tiny` run (4 steps) and its four bootstrapped experts, saved
before the inference half of each method moved to jaxface/runs/ and evaluators came to be named in the config: its
config.json has no `evals`. Only the newest checkpoint of each run is kept, and every large array is a constant
(the format is what is tested, not the numbers), so the fixture stays a few MB. Its config names the experts as
EXPERTS/<name>, which the test points at its own copy (absolute paths are machine-specific in any workdir).
"""

import json
import os
import shutil
import subprocess
import sys

from helpers import ROOT, env

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "disco_tiny_old")

SCRIPT = r"""
import json, os, sys
import ml_collections
import jaxface
from jaxface.train import loop

run = sys.argv[1]
g = jaxface.Generator.load(run)
images = g.sample(identity=1, pose=[0, 20, 0], n=2)
print("loaded", g.step, images.shape, images.dtype)
with open(os.path.join(run, "config.json")) as f:
  config = ml_collections.ConfigDict(json.load(f))
config.total_steps = 6  # two more steps: the resume
loop.train(config, run)
"""


def _copy(tmp_path):
  dst = tmp_path / "old"
  shutil.copytree(FIXTURE, dst)
  run = dst / "run"
  raw = json.loads((run / "config.json").read_text())
  for name in ("priors", "rnet", "idnet", "parser"):
    raw["experts"][name] = str(dst / "experts" / raw["experts"][name].removeprefix("EXPERTS/"))
  (run / "config.json").write_text(json.dumps(raw, indent=1))
  return raw, run


def test_an_old_disco_workdir_loads_resumes_and_evaluates(tmp_path):
  raw, run = _copy(tmp_path)
  assert "evals" not in raw and raw["trainer"] == "disco"  # written before evaluators were named in configs
  e = env()
  e["JAXFACE_CACHE"] = str(tmp_path / "empty_cache")  # nothing may be bootstrapped: every expert is in the fixture
  proc = subprocess.run([sys.executable, "-c", SCRIPT, str(run)], cwd=ROOT, env=e, capture_output=True, text=True,
                        timeout=1800)
  log = proc.stdout + proc.stderr
  assert proc.returncode == 0, log[-4000:]
  assert "loaded 4 (2, 16, 16, 3) uint8" in proc.stdout, log[-2000:]
  assert "resumed from" in log and "[experts] training" not in log, log[-2000:]
  assert sorted(os.listdir(run / "checkpoints")) == ["4", "6"]
  results = json.loads((run / "eval" / "step_6.json").read_text())
  assert {"control", "identity", "disentanglement"} <= set(results), sorted(results)
