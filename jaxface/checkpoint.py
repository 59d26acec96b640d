"""Orbax checkpoints: the train state (restored straight into its shardings) plus each host's data-iterator
state, saved every N steps, at the end, and on preemption; newest `keep` kept.

Layout: workdir/checkpoints/<step>/{state/, data/process_<i>-of-<n>.json, meta/}. A checkpoint directory only
appears once complete (Orbax writes to a temporary name and renames), so a crash mid-save leaves the previous
checkpoint intact and the run loses at most the steps since it.

Faults (docs/faults.md): a checkpoint that does not restore is moved aside to <step>.damaged and the run resumes
from the newest one that does; a save that fails (disk full, permission) stops the run at once with the path, the
cause and the last good checkpoint; a workdir that cannot be written is refused before any work; and a workdir
holds one run at a time (`run_guard.WorkdirLock`); the storage failures are named in `storage_faults`.
"""

import dataclasses
import glob
import json
import os
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from jaxface.errors import CheckpointError
from jaxface.storage_faults import exception_chain, first_line, quiet_failed_saves, storage_cause

# A failed save's half-written folder: polled every 50 ms, at most REMOVE_POLLS times (10 s), and gone only once
# absent for QUIET_POLLS polls in a row (0.5 s).
REMOVE_POLLS, QUIET_POLLS = 200, 10


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


# ---------------------------------------------------------------------------------------------------------------
# The workdir: writable, and one run at a time.


# ---------------------------------------------------------------------------------------------------------------
# Failures: a save the storage refused, a checkpoint that does not restore.

class CheckpointSaveError(CheckpointError):
  """A save failed for a reason outside the program (disk full, permission): the run stops at once."""


class DamagedCheckpoint(CheckpointError):
  """A checkpoint whose files do not restore (truncated, overwritten, metadata missing)."""


def aside_name(directory, step):
  """A free name for moving checkpoint `step` aside: <step>.damaged, then <step>.damaged-2, ... (never a step
  name, so neither Orbax nor the step listings here take it for a checkpoint)."""
  name, n = f"{step}.damaged", 1
  while os.path.exists(os.path.join(directory, name)):
    n += 1
    name = f"{step}.damaged-{n}"
  return os.path.join(directory, name)


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
    still finish a write into it after the failure was reported (recreating a folder), so it counts as gone only
    once it has stayed gone for QUIET_POLLS polls in a row (a loaded machine delays those late writes)."""
    pattern = os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*")
    reason, quiet = "it kept being written", 0
    for _ in range(REMOVE_POLLS):
      for path in glob.glob(pattern):
        try:
          shutil.rmtree(path)
        except FileNotFoundError:
          pass
        except OSError as e:
          reason = e.strerror or str(e)
      quiet = 0 if glob.glob(pattern) else quiet + 1
      if quiet >= QUIET_POLLS:
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


def restore_numpy(path, item=None):
  """A saved state pytree as host numpy arrays, whatever devices and mesh it was saved from (reading a multi-GPU
  run on a laptop). `path` is a checkpoint's state item directory; `item` (abstract arrays of some top-level keys)
  restores only those. Orbax errors propagate to the caller."""
  ck = ocp.PyTreeCheckpointer()
  if item is not None:
    as_numpy = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    return ck.restore(path, args=ocp.args.PyTreeRestore(item=item, restore_args=as_numpy, partial_restore=True))
  from absl import logging as absl_logging
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)  # item directories have no step metadata: Orbax warns, harmlessly
  try:
    meta = ck.metadata(path)
  finally:
    absl_logging.set_verbosity(verbosity)
  tree = getattr(getattr(meta, "item_metadata", meta), "tree", meta)
  as_numpy = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return ck.restore(path, restore_args=as_numpy)
