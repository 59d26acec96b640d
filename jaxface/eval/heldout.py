"""The shared CLI of held-out evaluations: load a trained workdir, evaluate on held-out synthetic samples, write JSON.

    python -m jaxface.eval.<name> --workdir W [--num N] [--start I] [--step S] [--out PATH]
"""

import json
import os

from jaxface import cli as cli_lib
from jaxface.errors import UserError


def main(argv, *, module, description, workdir_help, default_num, default_start, load, evaluate, shown=None):
  """The command of `module` (e.g. "jaxface.eval.recon"). `load(workdir, step) -> model` (with .config and .step);
  `evaluate(model, num, start) -> dict`. Both import what they need when called, after the arguments are parsed.

  Writes the result to --out (default WORKDIR/eval/heldout_step_<step>.json) and prints `shown(result)`.
  """
  p = cli_lib.parser(module, description=description)
  p.add_argument("--workdir", required=True, help=workdir_help)
  p.add_argument("--num", type=int, default=default_num, help="held-out samples")
  p.add_argument("--start", type=int, default=default_start, help="first held-out world index")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  p.add_argument("--out", default="", help="JSON path (default: WORKDIR/eval/heldout_step_<step>.json)")
  args = p.parse_args(argv)
  if args.num < 1 or args.start < 0:
    raise UserError(f"--num {args.num} must be >= 1 and --start {args.start} >= 0.")
  model = load(args.workdir, args.step)
  result = evaluate(model, args.num, args.start)
  result["step"] = model.step
  out = args.out or os.path.join(args.workdir, "eval", f"heldout_step_{model.step}.json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(shown(result) if shown else result, indent=2))
  print(f"wrote {out}")
