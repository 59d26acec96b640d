"""Shared config pieces: `:arg` parsing and the blocks every method's config has.

`parse_arg(arg, **spec)` turns the string after `configs/<method>.py:` into a ConfigDict of typed values:
  ""                 -> all defaults
  "tiny"             -> a bare word that names a boolean spec key sets it True (e.g. tiny=True);
                        otherwise it fills the first spec key (e.g. preset="tiny")
  "res=128,tiny"     -> comma-separated key=value pairs and bare words, in any order
  "tiny=false"       -> explicit booleans ("true"/"false"/"1"/"0")
Unknown keys are an error that names the valid ones.
"""

import ml_collections

from jaxface.config import parse_typed
from jaxface.errors import ConfigError


def parse_arg(arg, **spec):
  """Parses `arg` against `spec` (name -> default). See the module docstring for accepted forms."""
  out = ml_collections.ConfigDict(dict(spec))
  keys = list(spec)
  for part in filter(None, (arg or "").split(",")):
    if "=" in part:
      key, value = part.split("=", 1)
    elif part in spec and isinstance(spec[part], bool):
      key, value = part, "true"
    elif keys:
      key, value = keys[0], part
    else:
      raise ConfigError(f"this config takes no arguments, got {part!r}.")
    if key not in spec:
      raise ConfigError(f"unknown config argument {key!r}; valid arguments: {', '.join(keys)}.")
    out[key] = parse_typed(value, spec[key], f"config argument {key}")
  return out


def mesh_and_sharding(config):
  """Device mesh and parameter sharding defaults shared by every method."""
  # Mesh axes in order of increasing communication: batches are split over both, parameters only over fsdp.
  config.mesh = [("data", -1), ("fsdp", 1)]  # (axis, size); -1 fills the remaining devices
  # Parameter sharding: first matching regex on the '/'-joined state path wins.
  # Rules: "replicate", "fsdp" (shard the largest dim divisible by the fsdp axis size).
  config.sharding_rules = [(".*", "fsdp")]
  config.fsdp_min_size = 2**18  # parameters with fewer elements stay replicated (sharding them costs more than it saves)
  config.compute_dtype = "float32"  # activations: "bfloat16" on GPU/TPU; parameters stay float32
  return config


def run_blocks(config):
  """Checkpointing, logging and tracking blocks shared by every method."""
  config.seed = 0  # one base key; every step folds in its step number
  config.ckpt = ml_collections.ConfigDict(dict(
      every_steps=500,  # save every N steps (and at the end, and on SIGTERM)
      keep=3,  # newest checkpoints kept
      async_save=True,  # write in the background while training continues
  ))
  config.log = ml_collections.ConfigDict(dict(
      every_steps=50,  # progress line + metrics.jsonl row every N steps
      samples_every_steps=500,  # sample grid PNG every N steps (and at the end)
      num_samples=16,  # images in a sample grid (fixed latents)
  ))
  config.wandb = ml_collections.ConfigDict(dict(
      mode="offline",  # "online" (needs WANDB_API_KEY), "offline" (sync later with `wandb sync`), "disabled"
      project="jaxface",  # W&B project
      name="",  # run name; empty = workdir basename
  ))
  config.halt_on_nonfinite = True  # stop at the first NaN/Inf loss, naming the step and the last good checkpoint
  return config


def data_block(resolution, kind="synthetic"):
  """The data group every method shares. The default is the built-in synthetic face world, rendered on the
  device inside the training step from per-sample factors (no files needed)."""
  return ml_collections.ConfigDict(dict(
      kind=kind,  # synthetic (built-in face world) | folder | arrayrecord | tfds | generated (procedural blobs)
      path="",  # image folder, ArrayRecord folder/glob, or TFDS data_dir
      tfds_name="",  # TFDS dataset name when kind=tfds
      split="train",  # TFDS split
      resolution=resolution,  # images are center-cropped and resized (or rendered) at this size
      max_bad_fraction=0.01,  # corrupt images are skipped and counted; above this fraction training stops
      worker_count=0,  # grain worker processes decoding images (0 = threads in the training process)
      prefetch=2,  # batches prefetched per worker
      # The synthetic world (kind=synthetic); changing any of these changes every sample.
      num_identities=10_000,  # size of the identity pool
      max_yaw=45.0,  # degrees, uniform pose range
      max_pitch=20.0,  # degrees
      max_roll=10.0,  # degrees
      glasses_prob=0.2,  # fraction of identities wearing glasses
      level=1,  # mp468 mesh subdivision level used for rendering (0, 1, 2)
      focal=800.0,  # focal length in pixels at 256x256
      size=1_000_000,  # epoch length (indices wrap around)
  ))
