"""DiscoFaceGAN factor sweeps from the command line (the Python API is `jaxface.Generator`,
jaxface/runs/disco_generator.py):

  python -m jaxface.generate [--workdir W] --out grid.png [--seed S] [--rows 4] [--vary yaw=-40:40:9]
                             [--set pitch=10,expression=3,smile_l=0.8] [--psi 0.7] [--step N]
--vary/--set keys: yaw, pitch, roll (degrees), identity, expression, lighting, noise (seeds; a --vary range of
seeds is start:stop[:count]), and, on the synthetic face model, a named expression unit (smile_l, jaw_open,
...; value 0..1). Rows are identities seed, seed+1, ...; columns the varied factor (1 to 64 columns; angles in
[-180, 180] degrees); the grid is labelled with each row's identity seed and each column's value.
"""

import math
import sys

import numpy as np

from jaxface import cli as cli_lib
from jaxface.cli import lazy_import
from jaxface.errors import ConfigError, UserError, cli
from jaxface.runs.disco_factors import ANGLES, SEED_FACTORS

jax = lazy_import("jax")  # imported on first use: `--help` and argument mistakes answer without loading JAX
jnp = lazy_import("jax.numpy")


# ------------------------------------------------------------------------------------------------- sweeps


MAX_COLUMNS = 64  # --vary values (columns) and --rows (identities) per grid
MAX_ANGLE = 180.0  # degrees


def _parse_range(text, key, seeds):
  """--vary's `start:stop[:count]` -> the column values, checked: seeds are integers (start:stop is every seed in
  [start, stop)), angles lie in [-180, 180] degrees, and there are 1..MAX_COLUMNS columns."""
  parts = text.split(":")
  usage = f"--vary {key}={text}: expected start:stop[:count]"
  if len(parts) not in (2, 3):
    raise ConfigError(f"{usage} (two or three numbers separated by ':'), e.g. yaw=-40:40:9.")
  try:
    lo, hi = (int(parts[0]), int(parts[1])) if seeds else (float(parts[0]), float(parts[1]))
    count = int(parts[2]) if len(parts) == 3 else (hi - lo if seeds else 7)
  except ValueError:
    kind = "integer seeds" if seeds else "numbers"
    raise ConfigError(f"{usage} with {kind} and an integer count.") from None
  if not (math.isfinite(lo) and math.isfinite(hi)):
    raise ConfigError(f"{usage}: start and stop must be finite numbers.")
  if key in ANGLES and not (-MAX_ANGLE <= lo <= MAX_ANGLE and -MAX_ANGLE <= hi <= MAX_ANGLE):
    raise ConfigError(f"--vary {key}={text}: angles must lie in [-{MAX_ANGLE:g}, {MAX_ANGLE:g}] degrees.")
  if not 1 <= count <= MAX_COLUMNS:
    what = "stop - start" if seeds and len(parts) == 2 else "count"
    raise ConfigError(f"--vary {key}={text}: {what} = {count} columns; the grid takes 1 to {MAX_COLUMNS}.")
  if seeds and len(parts) == 2:
    return [float(v) for v in range(lo, hi)]
  values = np.linspace(lo, hi, count)
  return [float(round(v)) if seeds else float(v) for v in values]


def _check_setting(key, value):
  """--set's angle values lie in [-180, 180] degrees (the other factors are checked once the model is loaded)."""
  if key in ANGLES and not -MAX_ANGLE <= value <= MAX_ANGLE:
    raise ConfigError(f"--set {key}={value:g}: angles must lie in [-{MAX_ANGLE:g}, {MAX_ANGLE:g}] degrees.")


# ------------------------------------------------------------------------------------------------- CLI

def parse_args(argv):
  p = cli_lib.parser("jaxface.generate", description=__doc__)
  p.add_argument("--workdir", default=None,
                 help="a configs/disco.py training workdir or an exported folder (default: the bundled reference "
                      "generator, pretrained/disco_cpu64)")
  p.add_argument("--out", required=True, help="PNG path of the grid")
  p.add_argument("--seed", type=int, default=0, help="first identity seed (rows are seed, seed+1, ...)")
  p.add_argument("--rows", type=int, default=4, help=f"identities (rows), 1 to {MAX_COLUMNS}")
  p.add_argument("--vary", default="yaw=-40:40:9",
                 help=f"factor=start:stop[:count] along the columns (1 to {MAX_COLUMNS} columns)")
  p.add_argument("--set", default="", help="comma-separated factor=value fixed in every image")
  p.add_argument("--psi", type=float, default=None, help="truncation psi (default: the config's; 1 = off)")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  return p.parse_args(argv)


def check_args(args):
  """Everything about the arguments that needs no model: (vary key, column values, settings). Raises UserError."""
  if "=" not in args.vary:
    raise UserError(f"--vary {args.vary!r}: expected factor=start:stop[:count], e.g. yaw=-40:40:9")
  key, text = args.vary.split("=", 1)
  values = _parse_range(text, key, seeds=key in SEED_FACTORS or key == "noise")
  settings = []
  for part in filter(None, args.set.split(",")):
    if "=" not in part:
      raise UserError(f"--set {part!r}: expected factor=value")
    k, v = part.split("=", 1)
    try:
      value = float(v)
    except ValueError:
      raise UserError(f"--set {part!r}: the value must be a number") from None
    _check_setting(k, value)
    settings.append((k, value))
  if not 1 <= args.rows <= MAX_COLUMNS:
    raise UserError(f"--rows {args.rows}: the grid takes 1 to {MAX_COLUMNS} identities.")
  return key, values, settings


@cli
def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  key, values, settings = check_args(args)
  from jaxface.runs.disco_generator import Generator, apply_setting, write_sweep  # JAX: after the arguments parse
  from jaxface import parallel  # JAX: after the arguments parse
  parallel.enable_compilation_cache()  # a second grid of the same generator skips compiling
  gen = Generator.load(args.workdir, args.step)
  for k, _ in settings + [(key, 0.0)]:
    apply_setting(gen, gen.lambdas(1, 0), k, 0.0, 1)  # factor names the model knows, before any generation
  write_sweep(gen, args.out, (key, values), settings, args.seed, args.rows, args.psi)
  print(f"wrote {args.out}: {args.rows} identities x {len(values)} values of {key}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
