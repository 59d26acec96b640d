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
