"""The shared CLI of held-out evaluations: load a trained workdir, evaluate on held-out synthetic samples, write JSON.

    python -m jaxface.eval.<name> --workdir W [--num N] [--start I] [--step S] [--out PATH]
"""

import argparse
import json
import os


def main(argv, *, prog, description, workdir_help, default_num, default_start, load, evaluate, shown=None):
  """`load(workdir, step) -> model` (with .config and .step); `evaluate(model, num, start) -> dict`.

  Writes the result to --out (default WORKDIR/eval/heldout_step_<step>.json) and prints `shown(result)`.
  """
  p = argparse.ArgumentParser(prog=prog, description=description)
  p.add_argument("--workdir", required=True, help=workdir_help)
  p.add_argument("--num", type=int, default=default_num, help="held-out samples")
  p.add_argument("--start", type=int, default=default_start, help="first held-out world index")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  p.add_argument("--out", default="", help="JSON path (default: WORKDIR/eval/heldout_step_<step>.json)")
  args = p.parse_args(argv)
  model = load(args.workdir, args.step)
  result = evaluate(model, args.num, args.start)
  result["step"] = model.step
  out = args.out or os.path.join(args.workdir, "eval", f"heldout_step_{model.step}.json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(shown(result) if shown else result, indent=2))
  print(f"wrote {out}")
