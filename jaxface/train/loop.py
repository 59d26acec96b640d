"""The one training loop every method uses.

A method is a module in jaxface/train/ with:
  init_state(config, rng) -> state                pure; a plain dict pytree
  train_step(config) -> step(state, batch, rng, phase) -> (state, metrics)
                                                   pure; `phase` is static (e.g. which lazy regularizers run)
  phase(config, step) -> hashable                  the static phase for the step about to run
  make_data(config) -> iterator                    this host's slices of global batches, with get/set_state
  prepare(config) -> config                        optional; host work before the state exists (e.g. training
                                                   missing frozen experts), may fill config fields
  constants(config) -> {key: numpy pytree}         optional; parts of the state read from disk, not initialised
                                                   (frozen experts): placed on the devices as they are, never
                                                   compiled into the init program
  samples(config) -> fn(state) -> images           optional; a grid at fixed inputs, [N, H, W, 3] in [-1, 1]
  EVALS = ("name", ...)                            optional; the evaluators (jaxface/eval/<name>.py `run`) called
                                                   at the end when the config names none in config.evals
                                                   (jaxface/train/evaluators.py); results in workdir/eval/
The inference half of a method (its networks, loaders, samplers) is jaxface/runs/<method>.py, which the trainer,
the evaluators and the CLIs share; a trainer never imports jaxface/eval/.
Everything else happens here, read top to bottom: mesh, state created already sharded, restore, jit with donated
state, the step loop with metrics fetched one step late (the host never stalls the device), checkpoints,
sample grids, preemption and the NaN/Inf halt.
"""

import functools
import importlib
import json
import math
import os
from typing import Callable, NamedTuple

import jax
import numpy as np

from jaxface import checkpoint as ckpt_lib
from jaxface import config as config_lib
from jaxface import metrics as metrics_lib
from jaxface import parallel, programs, run_guard
from jaxface.errors import UserError
from jaxface.train import evaluators


class TrainingHalted(UserError):
  """Training stopped on a non-finite loss; the message names the step and the last good checkpoint."""


def get_method(config):
  try:
    return importlib.import_module(f"jaxface.train.{config.trainer}")
  except ModuleNotFoundError as e:
    if e.name == f"jaxface.train.{config.trainer}":
      raise UserError(f"config.trainer={config.trainer!r} names no method in jaxface/train/.") from None
    raise


class StatePlan(NamedTuple):
  abstract: dict          # ShapeDtypeStructs of the whole state
  shardings: dict         # NamedShardings of the whole state
  create: Callable        # () -> fresh state (call under the mesh)
  place_constants: Callable  # () -> {key: constants placed on the devices}
  constant_keys: frozenset   # top-level state keys that are constants


def plan_state(method, config, mesh, rng):
  """The `StatePlan` of `method`: `create()` (under the mesh) makes the fresh state
  already sharded: init_state jitted with out_shardings, plus the method's constants (frozen parts read from disk)
  placed as they are, so they are never compiled into the init program. `constants()` places just those (a resumed
  run re-reads them from their source: they are not trained, and a later phase may need more of them).
  The loop and the benchmarks share this."""
  init_fn = functools.partial(method.init_state, config)
  constants = method.constants(config) if hasattr(method, "constants") else {}
  as_abstract = lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype)
  abstract = dict(jax.eval_shape(init_fn, rng), **jax.tree_util.tree_map(as_abstract, constants))
  shardings = parallel.infer_shardings(abstract, mesh, config.sharding_rules, config.fsdp_min_size)

  def place_constants():
    return jax.device_put(constants, {k: shardings[k] for k in constants})

  def create():
    state = jax.jit(init_fn, out_shardings={k: v for k, v in shardings.items() if k not in constants})(rng)
    state.update(place_constants())
    return state

  return StatePlan(abstract, shardings, create, place_constants, frozenset(constants))


def _with_shardings(abstract, shardings):
  return jax.tree_util.tree_map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def _to_host_scalars(metrics):
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def train(config, workdir):
  """Trains `config` in `workdir`, resuming from its newest checkpoint that restores. Returns the final state.

  First, before any expensive work: the workdir must be writable, and no other run may hold it (process 0 locks
  it for the whole run; the OS releases the lock however the process ends)."""
  lock = None
  if jax.process_index() == 0:
    run_guard.check_writable(workdir)
    lock = run_guard.WorkdirLock(workdir).acquire()
  try:
    return _train(config, workdir)
  finally:
    if lock is not None:
      lock.release()


def _train(config, workdir):
  method = get_method(config)
  if hasattr(method, "prepare"):
    config = method.prepare(config)
  # ---------------------------------------------------------------------------------------------- mesh
  mesh = parallel.make_mesh(config.mesh)
  parallel.check_batch_size(config.batch_size, mesh)
  total_steps = int(config.total_steps)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config_lib.to_json(config))
  writer = metrics_lib.Writer(workdir, config, total_steps, config.batch_size)
  writer.log(f"devices: {jax.device_count()} ({jax.devices()[0].platform}), processes: {jax.process_count()}, "
             f"mesh: {dict(mesh.shape)}")

  # ---------------------------------------------------------------------------------------------- state
  plan = plan_state(method, config, mesh, jax.random.key(config.seed))

  # ---------------------------------------------------------------------------------------------- data
  data = method.make_data(config)

  # ---------------------------------------------------------------------------------------------- restore or init
  checkpointer = ckpt_lib.Checkpointer(workdir, config.ckpt.every_steps, config.ckpt.keep, config.ckpt.async_save)
  try:
    return _run(config, workdir, method, mesh, plan, data, writer, checkpointer)
  finally:
    try:
      checkpointer.close()
    finally:
      writer.close()


def _run(config, workdir, method, mesh, plan, data, writer, checkpointer):
  """Restores or initialises the state, then runs the steps, saves and evaluates."""
  total_steps = int(config.total_steps)
  rng = jax.random.key(config.seed)
  abstract, shardings = plan.abstract, plan.shardings
  repl = parallel.replicated(mesh)
  trained = {k: v for k, v in abstract.items() if k not in plan.constant_keys}
  resumed = checkpointer.restore_newest(_with_shardings(trained, {k: shardings[k] for k in trained}),
                                        partial=bool(plan.constant_keys), log=writer.log)
  if resumed is not None:
    first_step, state, data_state, _ = resumed
    with jax.set_mesh(mesh):
      state.update(plan.place_constants())
    if data_state is not None:
      try:
        data.set_state(data_state)
      except UserError as e:  # the data settings changed since the save: parameters still resume exactly
        writer.log(f"note: the saved data position does not fit this run's data ({e}); the data order restarts.")
    else:
      writer.log(f"note: checkpoint {first_step} holds no data state for {jax.process_count()} process(es); the data "
                 f"order restarts from its beginning (parameters resume exactly).")
    writer.log(f"resumed from {checkpointer.directory}/{first_step}")
  else:
    first_step = 0
    with jax.set_mesh(mesh):
      state = plan.create()
  writer.rewind(first_step)  # the steps after the checkpoint run again: their old rows go

  # ---------------------------------------------------------------------------------------------- compile
  step_fn = programs.jit(method.train_step(config), donate_argnums=(0,), out_shardings=(shardings, repl),
                    static_argnames=("phase",))
  sample_fn = programs.jit(method.samples(config), out_shardings=repl) if hasattr(method, "samples") else None

  def save(step):
    checkpointer.save(step, state, data.get_state(), {"step": step, "processes": jax.process_count()})

  def write_samples(step):
    if sample_fn is None:
      return
    writer.images(step, "samples", metrics_lib.image_grid(np.asarray(jax.device_get(sample_fn(state)))))

  # ---------------------------------------------------------------------------------------------- loop
  preemption = run_guard.Preemption().install()
  pending = None  # (step, metrics on device): fetched after the next step is dispatched
  last_saved = first_step if first_step else None

  def resolve(pending):
    step, metrics = pending
    values = _to_host_scalars(metrics)
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad and config.halt_on_nonfinite:
      good = checkpointer.latest_step()
      where = f"{checkpointer.directory}/{good}" if good is not None else "none (no checkpoint was saved yet)"
      raise TrainingHalted(f"non-finite {', '.join(bad)} at step {step}; training halted before saving that state. "
                           f"Last good checkpoint: {where}. Lower the learning rate or check the data, then rerun "
                           f"the same command to resume from it.")
    stats = getattr(data, "stats", None) or {}
    values.update({f"data_{k}": float(v) for k, v in stats.items()})
    if step % config.log.every_steps == 0 or step == total_steps:
      writer.write(step, values)
    if step == first_step + 1:
      writer.start_timer(step)  # throughput and ETA exclude compilation
    return values

  try:
    with jax.set_mesh(mesh):
      for step in range(first_step + 1, total_steps + 1):
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
          batch = parallel.to_global(next(data), mesh)
          state, metrics = step_fn(state, batch, rng, phase=method.phase(config, step))
        checkpointer.poll()  # a background save that failed stops the run now, not at the end
        if pending is not None:
          resolve(pending)
        pending = (step, metrics)
        if checkpointer.should_save(step) or step == total_steps or preemption.reached(step):
          resolve(pending)  # never save a state whose own step was non-finite
          pending = None
          save(step)
          last_saved = step
          if step != total_steps and preemption.reached(step):
            checkpointer.wait()
            writer.log(f"preempted: saved checkpoint at step {step}; rerun the same command to resume.")
            return state
        if step % config.log.samples_every_steps == 0 or step == total_steps:
          write_samples(step)
      if pending is not None:
        resolve(pending)
      if last_saved != total_steps and total_steps > first_step:
        save(total_steps)
      checkpointer.wait()
      if evaluators.evaluators(config, method):
        results = evaluators.run(config, state, workdir, method)
        if results and jax.process_index() == 0:
          os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
          with open(os.path.join(workdir, "eval", f"step_{total_steps}.json"), "w") as f:
            json.dump(results, f, indent=2)
          writer.evaluation(total_steps, results)
      writer.log(f"done: {total_steps} steps; checkpoints in {checkpointer.directory}")
    return state
  finally:
    preemption.uninstall()
