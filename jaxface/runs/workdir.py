"""The one way to read a training workdir: `read_run(workdir)` -> (config, state as host numpy, step).

A workdir is what `python -m jaxface.main` leaves: config.json (the run's whole config) and checkpoints/<step>/
state (Orbax). Every loader of a trained run (generators, experts, predictors, the CLIs) reads through here, so
the checks and their messages are the same everywhere, and a state saved on any mesh reads back on one host.
"""

import json
import os

import ml_collections

from jaxface.errors import CheckpointError


def read_config(workdir, trainer=None):
  """The config.json of `workdir`, checked to come from `trainer` (a name or a tuple of names) when given."""
  if not os.path.isdir(workdir):
    raise CheckpointError(f"{workdir!r} has no config.json: the folder does not exist; pass the --workdir of a "
                          f"finished or running training run (python -m jaxface.main ...).")
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise CheckpointError(f"{workdir!r} holds no training: it has no config.json; pass the --workdir of a finished "
                          f"or running `python -m jaxface.main` run.")
  try:
    with open(path) as f:
      raw = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise CheckpointError(f"cannot read {path} ({e}); it should be the config.json a training run wrote.") from None
  wanted = (trainer,) if isinstance(trainer, str) else trainer
  if wanted and raw.get("trainer") not in wanted:
    raise CheckpointError(f"{workdir!r} was trained with trainer={raw.get('trainer')!r}, not {' or '.join(wanted)}; "
                          f"pass a workdir trained with configs/{wanted[0]}.py.")
  return ml_collections.ConfigDict(raw)


def checkpoint_steps(workdir):
  """The steps saved under workdir/checkpoints, ascending (a checkpoint appears under its step's name only once
  complete; one damaged since is reported when it is read)."""
  d = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(d):
    return []
  return sorted(int(n) for n in os.listdir(d) if n.isdigit() and os.path.isdir(os.path.join(d, n)))


def pick_step(workdir, step=None):
  """`step` checked against the saved ones, or the newest when None."""
  steps = checkpoint_steps(workdir)
  if not steps:
    raise CheckpointError(f"{workdir!r} has no checkpoints yet (none under checkpoints/); train first, or let the "
                          f"running training save one (rerun its command to resume).")
  step = steps[-1] if step is None else int(step)
  if step not in steps:
    raise CheckpointError(f"{workdir!r} has no checkpoint at step {step}; available: {steps}.")
  return step


def read_run(workdir, step=None, trainer=None, item=None):
  """(config, state as host numpy arrays, step) of the newest (or given) checkpoint of a training workdir.

  `trainer` checks which method wrote it. `item` (an abstract pytree of top-level state keys) restores only
  those keys; else the whole state."""

  from jaxface import checkpoint as ckpt_lib  # Orbax and JAX: the CLIs read configs and steps before those load
  config = read_config(workdir, trainer)
  step = pick_step(workdir, step)
  path = os.path.join(os.path.abspath(workdir), "checkpoints", str(step), "state")  # Orbax wants absolute paths
  try:
    state = ckpt_lib.restore_numpy(path, item)
  except Exception as e:  # an unreadable checkpoint is the user's to fix: report what to do
    raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); pass another step, move "
                          f"the broken checkpoint away, or retrain.") from None
  return config, state, step
