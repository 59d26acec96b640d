"""Loads a config file (`path.py[:arg]`), applies `--config.a.b=value` overrides, and locks it.

Configs are ml_collections ConfigDicts from `get_config(arg)`. Overrides are typed by the value they replace,
and a key that does not exist is an error naming the valid keys at that level, so a typo never silently trains
the wrong thing.
"""

import ast
import importlib.util
import json
import os
import sys

import ml_collections

from jaxface.errors import ConfigError


def load_config_file(spec):
  """`spec` is `path/to/config.py[:arg]`; returns `get_config(arg)` from that file."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path!r} does not exist; pass e.g. --config configs/stylegan2.py:tiny.")
  # Config files import their neighbours (`from configs import common`): make the folder above them importable.
  root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if root not in sys.path:
    sys.path.insert(0, root)
  name = "jaxface_config_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path!r} has no get_config(arg) function.")
  config = module.get_config(arg) if arg else module.get_config("")
  config.config_file = spec  # recorded for config.json and resumes
  return config


def parse_typed(raw, old, what):
  """Parses the command-line string `raw` into the type of `old` (the value it replaces); `what` names it in errors."""
  if isinstance(old, bool):
    if raw.lower() in ("1", "true", "yes"):
      return True
    if raw.lower() in ("0", "false", "no"):
      return False
    raise ConfigError(f"{what}={raw!r}: expected true or false.")
  if isinstance(old, int):
    try:
      return int(raw)
    except ValueError:
      raise ConfigError(f"{what}={raw!r}: expected an integer.") from None
  if isinstance(old, float):
    try:
      return float(raw)
    except ValueError:
      raise ConfigError(f"{what}={raw!r}: expected a number.") from None
  if isinstance(old, str):
    return raw
  try:  # lists, tuples, None: Python literals, e.g. --config.mesh="[('data', 4), ('fsdp', 2)]"
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    raise ConfigError(f"{what}={raw!r}: expected a Python literal like {old!r}.") from None


def override(config, key, raw):
  """Sets `config.<key>` (dotted) from the string `raw`, with a clear error for unknown keys."""
  node = config
  parts = key.split(".")
  for i, part in enumerate(parts):
    valid = sorted(node.keys())
    if part not in node:
      where = "config" if i == 0 else "config." + ".".join(parts[:i])
      raise ConfigError(f"unknown key {key!r}: {where} has no field {part!r}. Valid fields: {', '.join(valid)}.")
    if i < len(parts) - 1:
      node = node[part]
      if not isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(f"unknown key {key!r}: config.{'.'.join(parts[:i + 1])} is a value, not a group.")
  old = node[parts[-1]]
  if isinstance(old, ml_collections.ConfigDict):
    raise ConfigError(f"--config.{key} is a group; set one of its fields: {', '.join(sorted(old.keys()))}.")
  with node.unlocked():
    node[parts[-1]] = parse_typed(raw, old, f"--config.{key}")


def parse_overrides(args):
  """Splits `['--config.a=1', '--config.b', '2']` into [('a', '1'), ('b', '2')]; other args are errors."""
  pairs, i = [], 0
  while i < len(args):
    arg = args[i]
    if not arg.startswith("--config."):
      raise ConfigError(f"unrecognised argument {arg!r}; overrides look like --config.key=value.")
    body = arg[len("--config."):]
    if "=" in body:
      key, raw = body.split("=", 1)
    elif i + 1 < len(args):
      key, raw = body, args[i + 1]
      i += 1
    else:
      raise ConfigError(f"{arg} needs a value: {arg}=VALUE.")
    pairs.append((key, raw))
    i += 1
  return pairs


def build(spec, overrides=()):
  """Loads `spec`, applies (key, raw) overrides, and returns a locked config."""
  config = load_config_file(spec)
  config.lock()
  for key, raw in overrides:
    override(config, key, raw)
  return config


def to_json(config):
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


# ------------------------------------------------------------------------------------------------- validation

WANDB_MODES = ("online", "offline", "disabled")


def _at_least(config, key, low):
  """config.<key> (dotted) must be an integer >= low; absent keys are not checked (not every method has them)."""
  node = config
  for part in key.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return
    node = node[part]
  if isinstance(node, bool) or not isinstance(node, int) or node < low:
    raise ConfigError(f"config.{key}={node!r} must be an integer >= {low}.")


def _in_unit_interval(config, key):
  group, _, field = key.rpartition(".")
  node = config[group] if group else config
  if field in node and not 0.0 <= float(node[field]) <= 1.0:
    raise ConfigError(f"config.{key}={node[field]!r} must lie in [0, 1].")


def _check_data(data):
  """The shared `data` group (configs/common.py data_block): kind, paths and ranges."""
  from jaxface.data import images, sources  # function-local: this module stays light for configs and --help
  if data.kind not in sources.KINDS:
    raise ConfigError(f"config.data.kind={data.kind!r} is not a data source; accepted: {', '.join(sources.KINDS)}.")
  images.check_resolution(data.resolution, "config.data.resolution")
  path = os.path.expanduser(data.get("path", "") or "")
  if data.kind == "folder" and not os.path.isdir(path):
    raise ConfigError(f"config.data.path={data.path!r} is not a folder; data.kind='folder' needs an existing folder "
                      f"of .png/.jpg images (searched recursively).")
  if data.kind == "arrayrecord" and not (path and sources.find_shards(path)):
    raise ConfigError(f"config.data.path={data.path!r} holds no .array_record shards; data.kind='arrayrecord' needs "
                      f"the DST_DIR of `{sources.PREPARE_HINT}` (or a glob of shard files).")
  if data.kind == "tfds" and not data.get("tfds_name"):
    raise ConfigError("config.data.tfds_name is empty; data.kind='tfds' needs a TFDS dataset name (e.g. celeb_a).")


def validate(config, workdir):
  """Checks the settings every method shares, before anything expensive runs and before any file is written:
  step counts and intervals, the batch size (> 0 and divisible by the devices and processes of the mesh), the
  data source (a known kind, an existing path), W&B mode, and that the workdir is not a file. Each method's own
  settings are its `validate(config)` (jaxface/train/<method>.py). Raises ConfigError naming the key and what it
  accepts. Needs JAX's devices (call after distributed initialisation)."""
  from jaxface import parallel  # function-local: imports JAX
  if not workdir:
    raise ConfigError("--workdir is empty; pass the folder where checkpoints, metrics and samples go.")
  if "://" not in workdir and os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir {workdir!r} is a file; pass a folder (new or an earlier run's, to resume).")
  for key in ("total_steps", "batch_size", "log.every_steps", "log.samples_every_steps", "log.num_samples",
              "ckpt.every_steps", "ckpt.keep"):
    _at_least(config, key, 1)
  if "wandb" in config and config.wandb.mode not in WANDB_MODES:
    raise ConfigError(f"config.wandb.mode={config.wandb.mode!r}; accepted: {', '.join(WANDB_MODES)}.")
  if "data" in config:
    _check_data(config.data)
    _in_unit_interval(config, "data.max_bad_fraction")
    _at_least(config, "data.worker_count", 0)
    _at_least(config, "data.prefetch", 1)
  parallel.check_batch_size(config.batch_size, parallel.make_mesh(config.mesh))
