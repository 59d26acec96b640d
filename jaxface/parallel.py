"""Device mesh, parameter sharding rules, global batches and multi-host start-up.

Mesh axes are ("data", "fsdp"). Batches are split over both axes; parameters replicate unless a rule shards
them over "fsdp". Rules are (regex, rule) pairs matched against the '/'-joined path of each state leaf, first
match wins (big_vision's idea, kept to two rules):
  "replicate"  every device holds the whole leaf
  "fsdp"       split the largest dimension divisible by the fsdp axis size, if the leaf has at least
               `min_size` elements (small leaves cost more to gather than they save)
"""

import os
import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxface import assets
from jaxface.errors import ConfigError

BATCH_AXES = ("data", "fsdp")


def enable_compilation_cache():
  """Compiled programs persist in $JAXFACE_CACHE/jax-compile (unless JAX_COMPILATION_CACHE_DIR names another
  place): a rerun, a resume or a second run of the same preset skips the minutes XLA:CPU spends compiling the
  training step's variants. Programs that compile in under a second are not worth the disk."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir:
    return
  jax.config.update("jax_compilation_cache_dir", os.path.join(assets.cache_dir(), "jax-compile"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def maybe_initialize_distributed():
  """Starts jax.distributed when a launcher says so (launch/*.sh set JAXFACE_DISTRIBUTED=1).

  On TPU pods and Slurm, jax.distributed.initialize() finds its peers itself; the local multi-process launcher
  passes the coordinator, process count and id explicitly through JAXFACE_COORDINATOR/_NUM_PROCESSES/_PROCESS_ID.
  """
  if os.environ.get("JAXFACE_DISTRIBUTED") != "1":
    return
  kwargs = {}
  if "JAXFACE_COORDINATOR" in os.environ:
    kwargs = dict(coordinator_address=os.environ["JAXFACE_COORDINATOR"],
                  num_processes=int(os.environ["JAXFACE_NUM_PROCESSES"]),
                  process_id=int(os.environ["JAXFACE_PROCESS_ID"]))
    if jax.config.jax_platforms in (None, "", "cpu") and os.environ.get("JAX_PLATFORMS", "cpu") == "cpu":
      # CPU collectives between processes (the real multi-host code path, on one machine).
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)


def make_mesh(mesh_spec, devices=None):
  """`mesh_spec` is [(axis, size), ...] with at most one -1 that takes the remaining devices."""
  devices = list(jax.devices() if devices is None else devices)
  names = tuple(name for name, _ in mesh_spec)
  if names != BATCH_AXES:
    raise ConfigError(f"config.mesh must name the axes {BATCH_AXES} in that order, got {names}.")
  sizes = [int(size) for _, size in mesh_spec]
  if sizes.count(-1) > 1:
    raise ConfigError(f"config.mesh may use -1 for at most one axis, got {mesh_spec}.")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if len(devices) % known:
      raise ConfigError(f"config.mesh {mesh_spec}: {len(devices)} devices are not divisible by {known}.")
    sizes[sizes.index(-1)] = len(devices) // known
  if -1 not in sizes and int(np.prod(sizes)) < len(devices) and jax.process_count() == 1:
    devices = devices[:int(np.prod(sizes))]  # a fixed mesh may use the first N devices of one process
  if int(np.prod(sizes)) != len(devices):
    raise ConfigError(f"config.mesh {mesh_spec} needs {int(np.prod(sizes))} devices but {len(devices)} are "
                      f"available; use -1 for one axis to fill the rest.")
  return Mesh(np.asarray(devices).reshape(sizes), names)


def _path_str(path):
  parts = []
  for key in path:
    parts.append(str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key)))))
  return "/".join(parts)


def _leaf_spec(shape, size, rule, fsdp_size, min_size):
  if rule == "replicate" or fsdp_size == 1 or size < min_size:
    return P()
  if rule != "fsdp":
    raise ConfigError(f"unknown sharding rule {rule!r}; use 'replicate' or 'fsdp'.")
  # Largest dimension the fsdp axis divides evenly; ties go to the last dim (usually output channels).
  best = None
  for dim in range(len(shape)):
    if shape[dim] % fsdp_size == 0 and (best is None or shape[dim] >= shape[best]):
      best = dim
  if best is None:
    return P()
  spec = [None] * len(shape)
  spec[best] = "fsdp"
  return P(*spec)


def infer_shardings(abstract_tree, mesh, rules, min_size):
  """NamedSharding per leaf of `abstract_tree` (shapes only) from `rules` [(regex, rule)]."""
  compiled = [(re.compile(pattern), rule) for pattern, rule in rules]
  fsdp_size = mesh.shape["fsdp"]

  def one(path, leaf):
    name = _path_str(path)
    shape = tuple(getattr(leaf, "shape", ()))
    rule = next((r for pattern, r in compiled if pattern.fullmatch(name)), "replicate")
    return NamedSharding(mesh, _leaf_spec(shape, int(np.prod(shape)) if shape else 1, rule, fsdp_size, min_size))

  return jax.tree_util.tree_map_with_path(one, abstract_tree)


def batch_sharding(mesh):
  """Batches are split along their first dimension over every mesh axis."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh):
  return NamedSharding(mesh, P())


def to_global(local_batch, mesh):
  """Assembles this host's slice of a global batch (dict of numpy) into global jax.Arrays."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def check_batch_size(global_batch_size, mesh):
  n = mesh.size
  if global_batch_size % n:
    raise ConfigError(f"config.batch_size={global_batch_size} must be divisible by the number of devices ({n}); "
                      f"use a multiple of {n}.")
  if global_batch_size % jax.process_count():
    raise ConfigError(f"config.batch_size={global_batch_size} must be divisible by the process count "
                      f"({jax.process_count()}).")
