"""SIGKILL fault injection for training: each trial runs the tiny StyleGAN2, kills it with SIGKILL at a random moment
(after a random step, or while a checkpoint is half-written), reruns the same command to the end, and checks that
the run ended bit-identical to an uninterrupted one (every leaf of the final state, every logged value of every
step) with exactly one metrics.jsonl row per step.

    python tools/fault_injection.py [--trials 20] [--steps 12] [--kills 1] [--seed 0] [--out DIR]

Odd trials aim the kill at a save (the kill lands while <step>.orbax-checkpoint-tmp exists), even ones at a random
moment after a random step. Prints one line per trial and a summary; exits 1 if any trial differs. The CI test
(tests/train/test_faults.py) runs one trial of 3 kills in a row through `trial`. Results are recorded in docs/faults.md.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from tests.train import helpers  # noqa: E402  (the tiny StyleGAN2 command the training tests use)

EVERY = 2  # checkpoint interval: many saves per run, so many chances to die inside one
TIMING = ("img_per_s", "sec_per_step")  # per-row wall-clock values: the only ones that may differ


def overrides(steps):
  """The run every trial makes: asynchronous saves (the default, and the path where a save is half-written while
  training goes on), a checkpoint every EVERY steps, all of them kept."""
  return [f"--config.total_steps={steps}", f"--config.ckpt.every_steps={EVERY}", "--config.ckpt.async_save=true",
          f"--config.ckpt.keep={steps // EVERY + 1}", "--config.log.samples_every_steps=1000"]


def start(workdir, steps):
  return subprocess.Popen(helpers.main_cmd(workdir, *overrides(steps)), cwd=helpers.ROOT, env=helpers.env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_to_end(workdir, steps, timeout=900):
  return subprocess.run(helpers.main_cmd(workdir, *overrides(steps)), cwd=helpers.ROOT, env=helpers.env(),
                        capture_output=True, text=True, timeout=timeout)


def outcome(workdir, steps):
  """(final state as numpy leaves by path, metrics rows) of a finished run."""
  import jax
  from jaxface.checkpoint import restore_numpy
  state = restore_numpy(os.path.join(os.path.abspath(workdir), "checkpoints", str(steps), "state"))
  leaves = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(state)}
  return leaves, helpers.metric_rows(workdir)


def differences(reference, result, steps):
  """What differs between two `outcome`s, in words (empty: bit-identical, one row per step)."""
  import numpy as np
  (ref_leaves, ref_rows), (leaves, rows) = reference, result
  problems = []
  if sorted(leaves) != sorted(ref_leaves):
    problems.append(f"state leaves differ: {len(leaves)} vs {len(ref_leaves)}")
  for path in sorted(set(leaves) & set(ref_leaves)):
    if not np.array_equal(np.asarray(leaves[path]), np.asarray(ref_leaves[path])):
      problems.append(f"leaf {path} differs")
  got = [r["step"] for r in rows]
  if got != list(range(1, steps + 1)):
    problems.append(f"metrics.jsonl steps are {got}, not one row for each of 1..{steps}")
  ref_by_step = {r["step"]: r for r in ref_rows}
  for row in rows:
    ref = ref_by_step.get(row["step"], {})
    changed = sorted(k for k in set(row) | set(ref) if k not in TIMING and row.get(k) != ref.get(k))
    if changed:
      problems.append(f"step {row['step']}: {', '.join(changed)} differ")
  return problems


def temporary_saves(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(n for n in os.listdir(d) if ".orbax-checkpoint-tmp" in n) if os.path.isdir(d) else []


def collect_lines(stream, lines):
  for line in stream:
    lines.append(line)


def last_step(lines):
  """The newest step this process reported ("step 7/12 ..." lines): rows in metrics.jsonl may be an earlier run's."""
  for line in reversed(lines):
    if line.startswith("step ") and "/" in line:
      return int(line.split()[1].split("/")[0])
  return 0


def kill_once(workdir, steps, rng, at_save, timeout=900):
  """Starts the run and SIGKILLs it after a random step: at once (plus a random delay up to 0.3 s), or, at_save,
  at the first moment after it that a checkpoint is half-written. Returns what the kill hit; raises if the run
  ended before it could be killed."""
  proc = start(workdir, steps)
  lines = []
  reader = threading.Thread(target=collect_lines, args=(proc.stdout, lines), daemon=True)
  reader.start()
  target = rng.randrange(1, steps - 2 * EVERY + 2)  # leaves a few steps and saves to die in
  deadline = time.time() + timeout
  while time.time() < deadline:
    if proc.poll() is not None:
      reader.join(5)
      raise RuntimeError(f"the run ended (rc={proc.returncode}) before the kill:\n{''.join(lines)[-3000:]}")
    if last_step(lines) >= target and (not at_save or temporary_saves(workdir)):
      if not at_save:
        time.sleep(rng.uniform(0.0, 0.3))
      break
    time.sleep(0.002)
  else:
    proc.kill()
    raise RuntimeError(f"no kill point in {timeout} s")
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  reader.join(5)
  # A save the kill interrupted leaves its temporary folder (the rerun's checkpoint manager removes it).
  return {"pid": proc.pid, "last_step": last_step(lines), "during_save": bool(temporary_saves(workdir)),
          "checkpoints": helpers.checkpoint_steps(workdir)}


def lock_holder(workdir):
  """The pid the run lock's file names (a killed run's stays there until the next run takes the lock)."""
  try:
    return json.load(open(os.path.join(workdir, "run.lock")))["pid"]
  except (OSError, ValueError, KeyError):
    return None


def trial(workdir, steps, rng, reference, aims):
  """Kills a run once per entry of `aims` ("step": after a random step, "save": inside a save), rerunning it after
  each kill, then lets the last rerun finish. Returns a dict with `problems` (empty: it passed)."""
  shots = []
  for aim in aims:
    shot = kill_once(workdir, steps, rng, at_save=aim == "save")
    shot["stale_lock"] = lock_holder(workdir) == shot["pid"]
    shots.append(shot)
  final = run_to_end(workdir, steps)
  problems = [] if final.returncode == 0 else [f"the rerun failed (rc={final.returncode}): {final.stderr[-2000:]}"]
  if not problems:
    problems = differences(reference, outcome(workdir, steps), steps)
  return {"kills": shots, "problems": problems, "rerun_log": final.stdout + final.stderr}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--trials", type=int, default=20)
  p.add_argument("--steps", type=int, default=12, help="steps per run (a checkpoint every 2)")
  p.add_argument("--kills", type=int, default=1, help="SIGKILLs per trial before the final rerun")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default=None, help="where the workdirs go (default: a temporary folder, removed)")
  args = p.parse_args(argv)
  # The standalone tool keeps its own compilation cache (tests/conftest.py sets the tests' one).
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".cache", "jax-compile-faults"))
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
  out = args.out or tempfile.mkdtemp(prefix="jaxface-faults-")
  rng = random.Random(args.seed)
  t0 = time.time()
  ref = run_to_end(os.path.join(out, "reference"), args.steps)
  if ref.returncode != 0:
    sys.exit(f"the uninterrupted run failed:\n{ref.stdout[-3000:]}{ref.stderr[-3000:]}")
  reference = outcome(os.path.join(out, "reference"), args.steps)
  print(f"reference: {args.steps} steps, {len(reference[0])} state leaves, {time.time() - t0:.0f} s", flush=True)
  passed = in_save = 0
  for i in range(args.trials):
    t = time.time()
    aims = ["save" if i % 2 else "step"] * args.kills
    result = trial(os.path.join(out, f"trial_{i:02d}"), args.steps, rng, reference, aims)
    passed += not result["problems"]
    in_save += sum(k["during_save"] for k in result["kills"])
    kills = "; ".join(f"after step {k['last_step']}{' during a save' if k['during_save'] else ''} (checkpoints "
                      f"{k['checkpoints']}{', stale lock' if k['stale_lock'] else ''})" for k in result["kills"])
    verdict = "bit-identical, one row per step" if not result["problems"] else "; ".join(result["problems"][:5])
    print(f"trial {i + 1}/{args.trials}: killed {kills}; {verdict} ({time.time() - t:.0f} s)", flush=True)
  total = args.trials * args.kills
  print(f"{passed}/{args.trials} trials bit-identical with one metrics row per step; {total} SIGKILLs, {in_save} "
        f"during a save; {time.time() - t0:.0f} s", flush=True)
  if args.out is None:
    shutil.rmtree(out, ignore_errors=True)
  return 0 if passed == args.trials else 1


if __name__ == "__main__":
  sys.exit(main())
