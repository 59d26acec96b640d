"""Orbax checkpoints: the train state (restored straight into its shardings) plus each host's data-iterator
state, saved every N steps, at the end, and on preemption; newest `keep` kept.

Layout: workdir/checkpoints/<step>/{state/, data/process_<i>-of-<n>.json, meta/}. A checkpoint directory only
appears once complete (Orbax writes to a temporary name and renames), so a crash mid-save leaves the previous
checkpoint intact and the run loses at most the steps since it.

Faults (docs/faults.md): a checkpoint that does not restore is moved aside to <step>.damaged and the run resumes
from the newest one that does; a save that fails (disk full, permission) stops the run at once with the path, the
cause and the last good checkpoint; a workdir that cannot be written is refused before any work; and a workdir
holds one run at a time (`WorkdirLock`).
"""

import dataclasses
import errno
import fcntl
import glob
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from jaxface.errors import CheckpointError, UserError


# ---------------------------------------------------------------------------------------------------------------
# Data-iterator state: one JSON file per data-loading process, like grain's own handler, but for any iterator
# whose get_state() returns a JSON-able dict, and tolerant of a different process count at restore.

class DataStateHandler(ocp.CheckpointHandler):

  def save(self, directory: epath.Path, args: "DataStateSave"):
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    (directory / name).write_text(json.dumps(args.state))

  def restore(self, directory: epath.Path, args: "DataStateRestore" = None):
    path = directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    return json.loads(path.read_text()) if path.exists() else None

  def metadata(self, directory):
    return None

  def finalize(self, directory):
    pass

  def close(self):
    pass


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
  state: dict


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
  pass


# ---------------------------------------------------------------------------------------------------------------

class Preemption:
  """Turns SIGTERM into a flag the loop polls after each step (the signal may arrive mid-step)."""

  def __init__(self):
    self._flag = threading.Event()
    self._previous = None

  def install(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, lambda *_: self._flag.set())
    return self

  def uninstall(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def reached(self, step):
    """True on every process once any process was told to stop (agreed at a common step when multi-host)."""
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      return multihost_utils.reached_preemption_sync_point(step) or self._flag.is_set()
    return self._flag.is_set()


# ---------------------------------------------------------------------------------------------------------------
# The workdir: writable, and one run at a time.

def first_file_in_the_way(path):
  """The first existing component of `path` that is a file where a folder should be, or None."""
  current = os.sep
  for part in os.path.abspath(path).split(os.sep)[1:]:
    current = os.path.join(current, part)
    if not os.path.isdir(current):
      return current if os.path.exists(current) else None
  return None


def write_failure(path, error):
  """Why `path` could not be created or written, in words, from the OSError that said so."""
  blocker = first_file_in_the_way(path)
  if blocker is not None:
    return f"{blocker} is a file, not a folder"
  return f"cannot create or write {path}: {error.strerror or error}"


def check_writable(workdir):
  """Creates workdir/checkpoints and writes a byte in each folder, so that a workdir that cannot be written (a
  read-only filesystem, a file in the way, no permission, a full disk) is one clear UserError before any expensive
  work, not a traceback from the first save. The probes are anonymous temporary files: nothing is left behind."""
  for directory in (workdir, os.path.join(workdir, "checkpoints")):
    try:
      os.makedirs(directory, exist_ok=True)
      with tempfile.TemporaryFile(dir=directory) as probe:
        probe.write(b"\0")
        probe.flush()
    except OSError as e:
      raise UserError(f"the workdir {workdir} cannot be written ({write_failure(directory, e)}); pick another "
                      f"--workdir or fix the path.") from None


def describe_holder(text):
  """ "pid 123 on host h, started <time>" from the JSON a `WorkdirLock` holder wrote (or what is known of it)."""
  try:
    info = json.loads(text)
    return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
  except (ValueError, KeyError, TypeError):  # the holder is between locking and writing its details
    return "a process that has not written its pid yet"


class WorkdirLock:
  """An exclusive lock on workdir/run.lock for a whole training run.

  Two runs on one workdir destroy each other: Orbax deletes unfinished saves when it starts (the other run's save
  in progress) and the checkpoints and metrics.jsonl rows would interleave. An flock belongs to the open file, so
  the OS drops it when the process dies however it dies: a SIGKILLed run never blocks its own rerun. The file's
  text (pid, host, start time) only feeds the message; the file is never deleted, because a run that unlinked it
  could let the next two runs lock two different files.
  """

  NAME = "run.lock"

  def __init__(self, workdir):
    self.workdir = workdir
    self.path = os.path.join(workdir, self.NAME)
    self._fd = None

  def acquire(self):
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = describe_holder(os.pread(fd, 4096, 0).decode(errors="replace"))
      os.close(fd)
      raise UserError(f"the workdir {self.workdir} is in use by another training run ({holder}); two runs on one "
                      f"workdir would overwrite each other's checkpoints. Wait for it to end, stop it, or pick "
                      f"another --workdir.") from None
    except OSError as e:  # some network filesystems have no locks: run unguarded rather than not at all
      os.close(fd)
      print(f"warning: cannot lock {self.path} ({e.strerror}); a second run on this workdir would not be refused.",
            file=sys.stderr, flush=True)
      return self
    details = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(details).encode(), 0)
    self._fd = fd
    return self

  def release(self):
    if self._fd is not None:
      os.close(self._fd)  # closing the file drops the lock
      self._fd = None


# ---------------------------------------------------------------------------------------------------------------
# Failures: a save the storage refused, a checkpoint that does not restore.

class CheckpointSaveError(CheckpointError):
  """A save failed for a reason outside the program (disk full, permission): the run stops at once."""


class DamagedCheckpoint(CheckpointError):
  """A checkpoint whose files do not restore (truncated, overwritten, metadata missing)."""


# errno -> what it means for a save, in the order a message should prefer them.
STORAGE_ERRNOS = (
    (errno.ENOSPC, "the disk is full"),
    (errno.EDQUOT, "the disk quota is used up"),
    (errno.EROFS, "the filesystem is read-only"),
    (errno.EACCES, "no permission to write there"),
    (errno.EPERM, "no permission to write there"),
    (errno.EFBIG, "a file outgrew the file-size limit (ulimit -f)"),
    (errno.EIO, "the storage reported an I/O error"),
)
# TensorStore status codes (in the text of the ValueErrors Orbax raises for them) that mean the storage failed.
STORAGE_STATUSES = ("RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "DATA_LOSS")


def exception_chain(error):
  """`error` and the exceptions it was raised from or during, outermost first."""
  seen = []
  while error is not None and error not in seen:
    seen.append(error)
    error = error.__cause__ or error.__context__
  return seen


def storage_cause(error):
  """What the storage did to a failed save, in words ("the disk is full (No space left on device)"), or None when
  the failure is not the storage's (a bug, which stays a traceback). TensorStore's failures reach Python as
  ValueErrors whose text carries the OS message, so the text is searched as well as the errno."""
  chain = exception_chain(error)
  codes = {e.errno for e in chain if isinstance(e, OSError)}
  text = "\n".join(str(e) for e in chain)
  for code, meaning in STORAGE_ERRNOS:
    if code in codes or os.strerror(code) in text:
      return f"{meaning} ({os.strerror(code)})"
  if any(isinstance(e, OSError) for e in chain) or any(status in text for status in STORAGE_STATUSES):
    return first_line(chain[-1])
  return None


def first_line(error, limit=300):
  text = str(error).strip().splitlines()
  return (text[0] if text else type(error).__name__)[:limit]


def aside_name(directory, step):
  """A free name for moving checkpoint `step` aside: <step>.damaged, then <step>.damaged-2, ... (never a step
  name, so neither Orbax nor the step listings here take it for a checkpoint)."""
  name, n = f"{step}.damaged", 1
  while os.path.exists(os.path.join(directory, name)):
    n += 1
    name = f"{step}.damaged-{n}"
  return os.path.join(directory, name)


class _QuietFailedSaves(logging.Filter):
  """A failed save is reported once, by the run, with its path and cause. On the way there Orbax logs a traceback
  per writer thread and asyncio one per abandoned write task (hundreds of lines, some at exit): Orbax's errors keep
  their first line, and asyncio's records of write tasks that died of a storage failure are dropped."""

  def filter(self, record):
    if record.name == "asyncio":
      error = record.exc_info[1] if record.exc_info else None
      return not (error is not None and "orbax" in record.getMessage() and storage_cause(error) is not None)
    if record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname:
      record.msg, record.args = first_line(record.getMessage()), None
      record.exc_info = record.exc_text = record.stack_info = None
    return True


def _abandoned_orbax_work(unraisable):
  """True for what a failed save or restore leaves behind once the run has reported it: TensorStore's late
  callbacks into the closed event loop ("Event loop is closed") and Orbax's read and write coroutines dropped with
  their error when the first one failed (one traceback each, thousands of lines on a damaged checkpoint)."""
  error = unraisable.exc_value
  if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
    return True
  code = getattr(unraisable.object, "cr_code", None)
  return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


def _quiet_unraisable(previous):
  """A sys.unraisablehook that drops `_abandoned_orbax_work` and passes everything else on."""

  def hook(unraisable):
    if not _abandoned_orbax_work(unraisable):
      previous(unraisable)

  hook.quiets_failed_saves = True
  return hook


def quiet_failed_saves():
  """Installs the filters above, once per process. They stay: some of the noise comes at interpreter exit."""
  for name in ("absl", "asyncio"):
    logger = logging.getLogger(name)
    if not any(isinstance(f, _QuietFailedSaves) for f in logger.filters):
      logger.addFilter(_QuietFailedSaves())
  if not getattr(sys.unraisablehook, "quiets_failed_saves", False):
    sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)


def _flat_shapes(tree):
  """{'a/b/0/c': (shape, dtype)} for any tree of arrays, ShapeDtypeStructs or Orbax array metadata.

  Paths are normalised to plain names so a namedtuple field and the dict key Orbax stores it under compare equal.
  """
  is_leaf = lambda x: hasattr(x, "shape") and hasattr(x, "dtype")
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]:
    if not is_leaf(leaf):
      continue
    name = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
    out[name] = (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
  return out


def _describe_mismatch(expected, found):
  """Human-readable lines for the differences between two {path: (shape, dtype)} dicts."""
  lines = []
  for key in sorted(set(expected) | set(found)):
    a, b = expected.get(key), found.get(key)
    if a != b:
      lines.append(f"  {key}: run expects {a or 'nothing'}, checkpoint has {b or 'nothing'}")
  return lines


class Checkpointer:
  """Saves and restores {state, data} under workdir/checkpoints.

  A save that fails is a CheckpointSaveError as soon as the failure is known: at once for a synchronous save, at
  the next `poll()` (the loop polls every step) for an asynchronous one. Training on past it would spend compute on
  steps no checkpoint will hold."""

  def __init__(self, workdir, every_steps, keep, async_save=True):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.every_steps = every_steps
    self.async_save = async_save
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
    handlers = {"state": ocp.StandardCheckpointHandler(), "data": DataStateHandler(),
                "meta": ocp.JsonCheckpointHandler()}
    self._pending = None  # the step of the asynchronous save in flight
    quiet_failed_saves()
    self.manager = ocp.CheckpointManager(self.directory, item_handlers=handlers, options=options)

  def latest_step(self):
    return self.manager.latest_step()

  def should_save(self, step):
    return step % self.every_steps == 0

  def save(self, step, state, data_state, meta):
    """Starts an (async) save. Arrays are copied to host before this returns, so the caller may donate them.
    Raises CheckpointSaveError for this save or the previous one (Orbax waits for it first)."""
    self.wait()
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=DataStateSave(data_state),
        meta=ocp.args.JsonSave(meta),
    )
    try:
      self.manager.save(step, args=args, force=True)
    except Exception as e:
      self._raise_save_failure(step, e)
    self._pending = step if self.async_save else None

  def poll(self):
    """Raises CheckpointSaveError if the asynchronous save in flight has failed; never blocks on one running."""
    if self._pending is not None and not self.manager.is_saving_in_progress():
      self.wait()

  def wait(self):
    """Blocks until the save in flight is done; raises CheckpointSaveError if it failed."""
    step, self._pending = self._pending, None
    try:
      self.manager.wait_until_finished()
    except Exception as e:
      self._raise_save_failure(step, e)

  def _raise_save_failure(self, step, error):
    """Re-raises a failed save of `step` as a CheckpointSaveError naming the path, the cause and the last good
    checkpoint, after removing the save's half-written temporary directory (it holds the space a full disk lacks).
    A failure that is not the storage's is re-raised as it is."""
    cause = storage_cause(error)
    if cause is None:
      raise error
    leftover = self._remove_temporary(step) if jax.process_index() == 0 else None
    self.manager.reload()
    good = self.manager.latest_step()
    last = f"{self.directory}/{good}" if good is not None else "none (no checkpoint was saved yet)"
    note = (f" The half-written {leftover[0]} could not be removed ({leftover[1]}); delete it by hand."
            if leftover else "")
    raise CheckpointSaveError(
        f"saving checkpoint {self.directory}/{step} failed: {cause}. Training stopped rather than spend compute on "
        f"steps it could not save.{note} Last good checkpoint: {last}. Free space or fix the permissions, then "
        f"rerun the same command to resume from it.") from None

  def _remove_temporary(self, step):
    """Removes <step>.orbax-checkpoint-tmp*; returns (path, reason) of one that stays, else None. TensorStore may
    still finish a write into it after the failure was reported (recreating a folder), hence the retries."""
    pattern = os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*")
    reason = "it kept being written"
    for _ in range(20):
      for path in glob.glob(pattern):
        try:
          shutil.rmtree(path)
        except FileNotFoundError:
          pass
        except OSError as e:
          reason = e.strerror or str(e)
      if not glob.glob(pattern):
        return None
      time.sleep(0.05)
    left = glob.glob(pattern)
    return (left[0], reason) if left else None

  def restore_newest(self, abstract_state, partial=False, log=print):
    """Restores the newest checkpoint that restores: (step, state, data_state or None, meta), or None when there
    is no checkpoint. Newer damaged ones are moved aside (renamed to <step>.damaged, never deleted) with a warning,
    but only once an older one has restored: when none does (a transient storage failure fails them all alike),
    nothing is moved and the run stops with every reason. An architecture mismatch stops the run at once."""
    damaged = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored, reason = self.restore(step, abstract_state, partial), None
      except DamagedCheckpoint as e:
        restored, reason = None, str(e)
      if not _everywhere(reason is None):  # every process falls back together, or none does
        damaged.append((step, reason or "another process could not restore it"))
        continue
      for bad, why in damaged:
        aside = self.move_aside(bad)
        log(f"warning: checkpoint {self.directory}/{bad} is damaged ({why}); moved it to {aside} and resuming "
            f"from step {step}.")
      if damaged:
        self.manager.reload()
      return (step, *restored)
    if damaged:
      reasons = "\n".join(f"  {self.directory}/{step}: {reason}" for step, reason in damaged)
      raise CheckpointError(f"no checkpoint in {self.directory} restores:\n{reasons}\nNothing was moved or deleted. "
                            f"If the storage is healthy, move that folder away to start over.")
    return None

  def move_aside(self, step):
    """Renames checkpoint `step` to a non-step name (process 0 does it; all wait); returns the new path."""
    source = os.path.join(self.directory, str(step))
    target = aside_name(self.directory, step)
    if jax.process_index() == 0:
      os.rename(source, target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"jaxface_move_aside_{step}")
    return target

  def restore(self, step, abstract_state, partial=False):
    """Restores `step` into the shardings of `abstract_state` (ShapeDtypeStructs with .sharding).

    Returns (state, data_state or None, meta). An architecture mismatch is a CheckpointError that lists what
    differs and leaves the checkpoint untouched; files that do not read back (truncated, overwritten, metadata
    missing) are a DamagedCheckpoint. partial=True returns only the top-level keys of `abstract_state`
    (the checkpoint may hold more, e.g. frozen constants the caller re-reads from their source).
    """
    try:
      found = self.manager.item_metadata(step)["state"]
    except Exception as e:  # unreadable metadata
      raise DamagedCheckpoint(f"its metadata cannot be read: {first_line(e)}") from None
    found_shapes = _flat_shapes(found)
    if not found_shapes:  # Orbax returns no tree when state/_METADATA is gone: damage, not another architecture
      raise DamagedCheckpoint("its state metadata is missing or empty")
    if partial:
      found_shapes = {k: v for k, v in found_shapes.items() if k.split("/", 1)[0] in abstract_state}
    expected = _flat_shapes(abstract_state)
    if found_shapes != expected:
      diff = _describe_mismatch(expected, found_shapes)
      shown = "\n".join(diff[:8]) + (f"\n  ... and {len(diff) - 8} more" if len(diff) > 8 else "")
      raise CheckpointError(
          f"the checkpoint in {self.directory} (step {step}) was written by a different model architecture "
          f"than this config builds:\n{shown}\nUse the config it was trained with (see config.json in the workdir), "
          f"or a new --workdir. The checkpoint was left untouched.")
    target = abstract_state
    if partial:  # Orbax's standard handler restores whole trees: read the extra keys replicated, then drop them
      tree = getattr(found, "tree", found)
      leaf = jax.tree_util.tree_leaves(abstract_state)[0]
      repl = jax.sharding.NamedSharding(leaf.sharding.mesh, jax.sharding.PartitionSpec())
      is_leaf = lambda x: hasattr(x, "shape") and hasattr(x, "dtype")
      target = dict(abstract_state, **{
          k: jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=repl), v,
                                    is_leaf=is_leaf)
          for k, v in tree.items() if k not in abstract_state})
    args = ocp.args.Composite(
        state=ocp.args.StandardRestore(target),
        data=DataStateRestore(),
        meta=ocp.args.JsonRestore(),
    )
    try:
      restored = self.manager.restore(step, args=args)
    except Exception as e:  # any file of it that does not decode: a truncated chunk, random bytes, bad JSON
      raise DamagedCheckpoint(first_line(exception_chain(e)[-1])) from None  # the innermost error says what broke
    state = {k: v for k, v in restored["state"].items() if k in abstract_state} if partial else restored["state"]
    return state, restored["data"], restored["meta"]

  def close(self):
    try:
      self.wait()
    finally:
      self.manager.close()


def _everywhere(ok):
  """True when `ok` holds on every process (one process's view when there is one)."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils
  return bool(np.all(multihost_utils.process_allgather(np.array(ok))))


def restore_numpy(path):
  """A saved state pytree as host numpy arrays, whatever devices and mesh it was saved from (reading a multi-GPU
  run on a laptop). `path` is a checkpoint's state item directory. Orbax errors propagate to the caller."""
  from absl import logging as absl_logging
  ck = ocp.PyTreeCheckpointer()
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)  # item directories have no step metadata: Orbax warns, harmlessly
  try:
    meta = ck.metadata(path)
  finally:
    absl_logging.set_verbosity(verbosity)
  tree = getattr(getattr(meta, "item_metadata", meta), "tree", meta)
  as_numpy = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return ck.restore(path, restore_args=as_numpy)
