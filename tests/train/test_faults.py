"""Faults that must neither lose a run nor print a traceback (docs/faults.md), on the tiny StyleGAN2:
damaged checkpoints fall back to the newest that restores, a failed save stops the run at once, an unwritable
workdir is refused before any work, a workdir holds one run at a time, and SIGKILLs at random moments (some inside
a save) resume bit-identical with one metrics.jsonl row per step.

Every faulted run is compared with one uninterrupted reference run (the module fixture). The runs go one after
another, so all but the first find the compiled step in the persistent cache.
"""

import errno
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from jaxface import checkpoint as ckpt_lib
from jaxface import metrics as metrics_lib
from jaxface import run_guard, storage_faults
from jaxface.errors import UserError
from tests.train import helpers
from tools import fault_injection as fi

STEPS = 8  # checkpoints at 2, 4, 6, 8 (fi.EVERY), all kept


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """(workdir, outcome) of the uninterrupted run every faulted run must end identical to."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  result = fi.run_to_end(workdir, STEPS)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return workdir, fi.outcome(workdir, STEPS)


def _assert_clean_error(result, *needles):
  out = result.stdout + result.stderr
  assert result.returncode == 2, out[-4000:]
  assert "Traceback" not in out, out[-4000:]
  assert "error:" in result.stderr
  for needle in needles:
    assert needle in result.stderr, (needle, result.stderr)


# ------------------------------------------------------------------------------------------------- damaged

def _damage(checkpoint, kind):
  state = checkpoint / "state"
  largest = max((p for p in state.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  if kind == "truncated":
    os.truncate(largest, largest.stat().st_size // 3)
  elif kind == "random bytes":
    largest.write_bytes(os.urandom(largest.stat().st_size))
  else:  # "missing metadata": once reported as a different model architecture
    (state / "_METADATA").unlink()


def test_damaged_checkpoints_fall_back_to_the_newest_that_restores(reference, tmp_path):
  ref_dir, ref = reference
  workdir = tmp_path / "run"
  shutil.copytree(ref_dir, workdir)
  damaged = {8: "truncated", 6: "random bytes", 4: "missing metadata"}  # each in turn the newest left
  for step, kind in damaged.items():
    _damage(workdir / "checkpoints" / str(step), kind)

  result = fi.run_to_end(workdir, STEPS)
  out = result.stdout + result.stderr
  assert result.returncode == 0, out[-4000:]
  assert "Traceback" not in out and "different model architecture" not in out, out[-4000:]
  for step in damaged:
    assert re.search(rf"warning: checkpoint {workdir}/checkpoints/{step} is damaged \(.+\); moved it to "
                     rf"{workdir}/checkpoints/{step}\.damaged and resuming from step 2\.", out), (step, out)
    assert (workdir / "checkpoints" / f"{step}.damaged" / "state").is_dir()  # kept aside, never deleted
  assert f"resumed from {workdir}/checkpoints/2" in out
  assert fi.differences(ref, fi.outcome(workdir, STEPS), STEPS) == []


# ------------------------------------------------------------------------------------------------- failed save

def _mount_tmpfs(path, size):
  """Mounts a tmpfs of `size` bytes at `path`; False where this process may not (not root, no mount)."""
  if os.geteuid() != 0 or shutil.which("mount") is None:
    return False
  return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                        capture_output=True).returncode == 0


def _file_size_limit(limit):
  """preexec_fn: files may not grow past `limit` bytes (writes fail with EFBIG rather than killing the run)."""
  def limit_files():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
  return limit_files


def test_a_failed_save_stops_the_run_at_once(reference, tmp_path):
  """The checkpoints folder is a tmpfs with room for one checkpoint and a half, so the second save runs out of
  space half-way. Where no tmpfs can be mounted (not root), a file-size limit below the largest checkpoint file
  makes the first save fail the same way: a write refused by the OS inside Orbax's background writer threads."""
  ref_dir, _ = reference
  files = [p for p in (ref_dir / "checkpoints" / "2").rglob("*") if p.is_file()]
  checkpoint_bytes = sum(-(-p.stat().st_size // 4096) * 4096 for p in files)  # tmpfs allocates whole pages
  workdir = tmp_path / "run"
  (workdir / "checkpoints").mkdir(parents=True)
  mounted = _mount_tmpfs(workdir / "checkpoints", checkpoint_bytes * 3 // 2)
  cause = "the disk is full (No space left on device)" if mounted else "(File too large)"
  limit = None if mounted else _file_size_limit(max(p.stat().st_size for p in files) // 2)
  try:
    result = subprocess.run(helpers.main_cmd(workdir, *fi.overrides(STEPS)), cwd=helpers.ROOT, env=helpers.env(),
                            capture_output=True, text=True, timeout=900, preexec_fn=limit)
    left_behind = fi.temporary_saves(workdir)
    kept = helpers.checkpoint_steps(workdir)
  finally:
    if mounted:
      subprocess.run(["umount", "-l", str(workdir / "checkpoints")], check=True)
  _assert_clean_error(result, cause)
  failed = int(re.search(rf"saving checkpoint {workdir}/checkpoints/(\d+) failed", result.stderr).group(1))
  assert left_behind == [], left_behind  # the half-written save is gone: it held the space the disk lacks
  last_good = f"{workdir}/checkpoints/{kept[-1]}" if kept else "none"
  assert f"Last good checkpoint: {last_good}" in result.stderr, result.stderr
  assert helpers.metric_rows(workdir)[-1]["step"] <= failed + fi.EVERY  # stopped within one checkpoint interval


# ------------------------------------------------------------------------------------------------- workdir

def _read_only_folder(path):
  """A folder this process cannot write: a read-only tmpfs where it may mount one, else one without write
  permission (root ignores permissions). Returns a cleanup function."""
  path.mkdir()
  if _mount_tmpfs(path, 1 << 20):
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    return lambda: subprocess.run(["umount", "-l", str(path)], check=True)
  path.chmod(0o555)
  return lambda: path.chmod(0o755)


def test_unwritable_workdirs_are_refused_at_once(tmp_path):
  (tmp_path / "a_file").write_text("not a folder")
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "checkpoints").write_text("not a folder")
  release = _read_only_folder(tmp_path / "read_only")
  cases = [  # workdir, what the message must name
      (tmp_path / "read_only" / "run", str(tmp_path / "read_only" / "run")),
      ("/proc/jaxface-test/run", "/proc/jaxface-test/run"),
      (tmp_path / "a_file", str(tmp_path / "a_file")),
      (tmp_path / "a_file" / "run", f"{tmp_path / 'a_file'} is a file"),
      (tmp_path / "run", f"{tmp_path / 'run' / 'checkpoints'} is a file"),
  ]
  # "At once" against what this machine needs right now to start Python and import JAX and the entry point (the
  # suite runs beside other work, so a fixed number of seconds says more about the load than about the refusal);
  # a refusal that came after building the model or compiling would take tens of seconds more.
  t0 = time.time()
  subprocess.run([sys.executable, "-c", "import jax, jax.numpy; import jaxface.main"], cwd=helpers.ROOT, env=helpers.env(),
                 check=True, timeout=120)
  startup = time.time() - t0
  try:
    for workdir, needle in cases:
      t0 = time.time()
      result = helpers.run_main(workdir, timeout=120)
      seconds = time.time() - t0
      _assert_clean_error(result, needle)
      assert seconds < 2 * startup + 3, (workdir, seconds, startup)
  finally:
    release()


# ------------------------------------------------------------------------------------------------- one run per workdir

def test_a_second_run_on_a_busy_workdir_is_refused(reference, tmp_path):
  """The first run is frozen (SIGSTOP) while it writes a checkpoint, the second starts on the same workdir: it must
  exit 2 naming the first, without touching the half-written save; thawed, the first ends as if alone."""
  _, ref = reference
  workdir = tmp_path / "run"
  first = fi.start(workdir, STEPS)
  lines = []
  reader = threading.Thread(target=fi.collect_lines, args=(first.stdout, lines), daemon=True)
  reader.start()
  try:
    while not (fi.last_step(lines) >= 1 and fi.temporary_saves(workdir)):
      assert first.poll() is None, "".join(lines)[-3000:]
      time.sleep(0.002)
    first.send_signal(signal.SIGSTOP)
    in_progress = fi.temporary_saves(workdir)
    t0 = time.time()
    second = fi.run_to_end(workdir, STEPS, timeout=120)
    seconds = time.time() - t0
    assert fi.temporary_saves(workdir) == in_progress  # the first's save was left alone
  finally:
    first.send_signal(signal.SIGCONT)
  _assert_clean_error(second, f"is in use by another training run (pid {first.pid} on host {socket.gethostname()}")
  assert seconds < 30, seconds
  assert first.wait(timeout=900) == 0, "".join(lines)[-3000:]
  reader.join(5)
  assert fi.differences(ref, fi.outcome(workdir, STEPS), STEPS) == []


# ------------------------------------------------------------------------------------------------- SIGKILL

def test_sigkill_trials_resume_bit_identical(reference, tmp_path):
  """tools/fault_injection.py in small (the 20-trial record is in docs/faults.md): three SIGKILLs in a row, the
  first after a random step, the next two aimed at saves, each followed by a rerun of the same command; the last
  rerun must end as the uninterrupted run did. Every kill leaves its lock in the file, and no rerun is refused."""
  _, ref = reference
  seed = random.randrange(2 ** 32)
  result = fi.trial(tmp_path / "run", STEPS, random.Random(seed), ref, aims=("step", "save", "save"))
  kills = result["kills"]
  assert result["problems"] == [], (seed, kills, result["problems"], result["rerun_log"][-3000:])
  assert all(k["stale_lock"] for k in kills), (seed, kills)
  assert any(k["during_save"] for k in kills[1:]), (seed, kills)


# ------------------------------------------------------------------------------------------------- the pieces

def test_metrics_rows_through_a_step_keep_one_row_per_step():
  lines = [json.dumps({"step": s, "loss": s / 10}) + "\n" for s in (1, 2, 3, 4, 3, 4, 5)]
  lines.insert(3, '{"step": 4, "lo')  # a row cut short by a kill
  kept = metrics_lib.rows_through(lines, 4)
  assert [json.loads(line)["step"] for line in kept] == [1, 2, 3, 4]
  assert kept[3] == lines[6]  # of a repeated step, the row written last (by the run that went on from there)


def test_rewind_rewrites_metrics_jsonl(tmp_path):
  from ml_collections import ConfigDict
  writer = metrics_lib.Writer(str(tmp_path), ConfigDict({"wandb": {"mode": "disabled"}}), 10, 8)
  for step in (1, 2, 3):
    writer.write(step, {"loss": float(step)})
  writer.rewind(1)
  writer.write(2, {"loss": 20.0})
  writer.close()
  assert [(r["step"], r["loss"]) for r in helpers.metric_rows(tmp_path)] == [(1, 1.0), (2, 20.0)]


def test_a_metrics_write_failure_is_one_message(tmp_path, monkeypatch):
  from ml_collections import ConfigDict
  writer = metrics_lib.Writer(str(tmp_path), ConfigDict({"wandb": {"mode": "disabled"}}), 10, 8)

  def full(_):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(writer._jsonl, "write", full)
  with pytest.raises(UserError, match="metrics.jsonl .No space left on device"):
    writer.write(1, {"loss": 1.0})
  writer.close()


def test_storage_causes_are_named_and_bugs_are_not():
  enospc = ValueError('RESOURCE_EXHAUSTED: Error writing local file "x": Failed writing: No space left on device')
  assert storage_faults.storage_cause(enospc) == "the disk is full (No space left on device)"
  assert storage_faults.storage_cause(PermissionError(errno.EACCES, "Permission denied")).startswith("no permission")
  try:
    try:
      raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    except OSError as e:
      raise RuntimeError("save failed") from e
  except RuntimeError as chained:
    assert storage_faults.storage_cause(chained).startswith("the filesystem is read-only")
  assert storage_faults.storage_cause(KeyError("G.params")) is None  # a bug stays a traceback


def test_abandoned_orbax_read_tasks_are_not_logged_but_other_asyncio_errors_are():
  """A damaged checkpoint fails every read task of its restore; asyncio logs each one nobody awaited with a
  traceback ("_GatheringFuture exception was never retrieved"). The run reports the checkpoint once, so records of
  tasks that died inside Orbax are dropped; an asyncio error from anywhere else is kept whole."""
  import logging

  def raised_in(filename):
    code = compile("raise ValueError('OUT_OF_RANGE: Requested byte range is not valid')", filename, "exec")
    try:
      exec(code, {})
    except ValueError as e:
      try:
        raise Exception("Encountered error while reading array index") from e
      except Exception as outer:
        return outer

  def record(error):
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "_GatheringFuture exception was never retrieved",
                             None, (type(error), error, error.__traceback__))

  quiet = storage_faults._QuietFailedSaves()
  assert not quiet.filter(record(raised_in(os.path.join(os.sep, "site", "orbax", "serialization.py"))))
  assert quiet.filter(record(raised_in(os.path.join(os.sep, "site", "mylib", "reader.py"))))


def test_workdir_lock_names_its_holder_and_is_released(tmp_path):
  held = run_guard.WorkdirLock(str(tmp_path)).acquire()
  with pytest.raises(UserError, match=rf"in use by another training run \(pid {os.getpid()} on host "):
    run_guard.WorkdirLock(str(tmp_path)).acquire()  # flock locks belong to open files: one process can test this
  held.release()
  run_guard.WorkdirLock(str(tmp_path)).acquire().release()
  assert run_guard.describe_holder("") == "a process that has not written its pid yet"


def test_damaged_checkpoints_are_moved_aside_under_free_names(tmp_path):
  (tmp_path / "6.damaged").mkdir()
  assert ckpt_lib.aside_name(str(tmp_path), 6) == str(tmp_path / "6.damaged-2")
  assert ckpt_lib.aside_name(str(tmp_path), 8) == str(tmp_path / "8.damaged")
  (tmp_path / "f").write_text("")
  assert run_guard.first_file_in_the_way(str(tmp_path / "f" / "a" / "b")) == str(tmp_path / "f")
  assert run_guard.first_file_in_the_way(str(tmp_path / "new" / "a")) is None
