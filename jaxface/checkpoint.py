"""Orbax checkpoints: the train state (restored straight into its shardings) plus each host's data-iterator
state, saved every N steps, at the end, and on preemption; newest `keep` kept.

Layout: workdir/checkpoints/<step>/{state/, data/process_<i>-of-<n>.json, meta/}. A checkpoint directory only
appears once complete (Orbax writes to a temporary name and renames), so a crash mid-save leaves the previous
checkpoint intact and the run loses at most the steps since it.
"""

import dataclasses
import json
import os
import signal
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from jaxface.errors import CheckpointError


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
  """Saves and restores {state, data} under workdir/checkpoints."""

  def __init__(self, workdir, every_steps, keep, async_save=True):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.every_steps = every_steps
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
    handlers = {"state": ocp.StandardCheckpointHandler(), "data": DataStateHandler(),
                "meta": ocp.JsonCheckpointHandler()}
    self.manager = ocp.CheckpointManager(self.directory, item_handlers=handlers, options=options)

  def latest_step(self):
    return self.manager.latest_step()

  def should_save(self, step):
    return step % self.every_steps == 0

  def save(self, step, state, data_state, meta):
    """Starts an (async) save. Arrays are copied to host before this returns, so the caller may donate them."""
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=DataStateSave(data_state),
        meta=ocp.args.JsonSave(meta),
    )
    self.manager.save(step, args=args, force=True)

  def restore(self, step, abstract_state, partial=False):
    """Restores `step` into the shardings of `abstract_state` (ShapeDtypeStructs with .sharding).

    Returns (state, data_state or None, meta). An architecture mismatch is a CheckpointError that lists what
    differs and leaves the checkpoint untouched. partial=True returns only the top-level keys of `abstract_state`
    (the checkpoint may hold more, e.g. frozen constants the caller re-reads from their source).
    """
    try:
      found = self.manager.item_metadata(step)["state"]
    except Exception as e:  # unreadable metadata: report, never overwrite
      raise CheckpointError(f"checkpoint {self.directory}/{step} cannot be read ({e}). Move it away or use "
                            f"another --workdir.") from None
    found_shapes = _flat_shapes(found)
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
    restored = self.manager.restore(step, args=args)
    state = {k: v for k, v in restored["state"].items() if k in abstract_state} if partial else restored["state"]
    return state, restored["data"], restored["meta"]

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


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
