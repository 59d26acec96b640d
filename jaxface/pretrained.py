"""Exported generators: a DiscoFaceGAN run's G_ema and frozen experts in one small folder, loadable without Orbax,
the training workdir or any expert workdir.

A folder holds `config.json` (the run's resolved config) and `weights.npz` (the G_ema parameters and the frozen
pytree: priors, face model, R-Net, identity net, λ statistics; flat '/' keys, read with allow_pickle=False).
G_ema, the face model and every small array are stored exactly (float32). The experts' large kernels (QUANTIZED)
are stored as int8 with one float32 scale per output channel (their last axis): a ResNet-18 identity net alone is
43 MiB in float32, and int8 keeps the bundled generator under 20 MB while the experts' read-outs move by far less
than their own errors (tests/train/test_disco_recipe.py measures it). The face parser only serves training's
stage 2 and is left out. `jaxface.Generator.load`, `python -m jaxface.generate`, `serve` and `embed` take such a folder
wherever they take a workdir. The repository ships the CPU reference generator as `pretrained/disco_cpu64`.

  python -m jaxface.pretrained --workdir W --out pretrained/NAME [--step N] [--rnet R]  # export a checkpoint
"""

import json
import os
import sys

import numpy as np

from jaxface import cli as cli_lib
from jaxface.convert import flatten, unflatten
from jaxface.errors import CheckpointError, cli
from jaxface.runs.workdir import read_run

WEIGHTS, CONFIG = "weights.npz", "config.json"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")
REFERENCE = os.path.join(ROOT, "disco_cpu64")  # the bundled CPU reference generator
QUANTIZED = ("frozen/idnet/", "frozen/rnet/", "frozen/priors/")  # kernels of these, with >= QUANT_MIN entries
QUANT_MIN = 1 << 14
LEFT_OUT = ("frozen/parser/",)  # training-only experts
Q8, SCALE = ".q8", ".scale"  # key suffixes of a quantized kernel's int8 values and its per-channel scales


def is_export(path):
  return os.path.isfile(os.path.join(path, WEIGHTS)) and os.path.isfile(os.path.join(path, CONFIG))


def export(workdir, out, step=None, rnet=None):
  """Writes `out`/config.json and `out`/weights.npz from the newest (or given) checkpoint of a disco workdir.
  `rnet`: a configs/rnet.py workdir whose R-Net is bundled instead of the one the run trained against (an
  independent measuring R-Net: the generator was never optimized against it). Returns (out, step, size in bytes)."""
  config, state, step = read_run(workdir, step, trainer="disco")
  frozen = dict(state["frozen"])
  if rnet is not None:
    from jaxface.runs import disco_experts  # JAX: only an export that swaps the R-Net needs it
    swapped = disco_experts.rnet_frozen(rnet)
    if disco_experts.tree_shapes(swapped) != disco_experts.tree_shapes(frozen["rnet"]):
      raise CheckpointError(f"the R-Net in {rnet!r} is not the architecture of the run's R-Net; train it from the "
                            f"run's R-Net config ({config.experts.bootstrap.rnet}).")
    frozen["rnet"] = swapped
  tree = {"G_ema": state["G_ema"], "frozen": frozen}
  flat = {}
  for k, v in flatten(_plain(tree)).items():
    if not k.startswith(LEFT_OUT):
      flat.update(_stored(k, _compact(np.asarray(v))))
  os.makedirs(out, exist_ok=True)
  config = dict(config.to_dict(), exported_from=dict(step=int(step), **({"rnet": rnet} if rnet else {})))
  with open(os.path.join(out, CONFIG + ".tmp"), "w") as f:
    json.dump(config, f, indent=1, sort_keys=True)
  np.savez_compressed(os.path.join(out, "weights.tmp.npz"), **flat)
  os.replace(os.path.join(out, "weights.tmp.npz"), os.path.join(out, WEIGHTS))
  os.replace(os.path.join(out, CONFIG + ".tmp"), os.path.join(out, CONFIG))
  return out, int(step), os.path.getsize(os.path.join(out, WEIGHTS))


def read(path):
  """(config, state {"G_ema", "frozen", "step"} as numpy, step) of an exported folder."""
  import ml_collections
  if not is_export(path):
    raise CheckpointError(f"{path!r} is not an exported generator (it needs {CONFIG} and {WEIGHTS}); pass a "
                          f"training workdir or a folder written by `python -m jaxface.pretrained`.")
  with open(os.path.join(path, CONFIG)) as f:
    raw = json.load(f)
  step = int(raw.pop("exported_from", {}).get("step", 0))
  with np.load(os.path.join(path, WEIGHTS), allow_pickle=False) as z:
    tree = unflatten(_restored({k: z[k] for k in z.files}))
  tree["step"] = np.asarray(step, np.int32)
  return ml_collections.ConfigDict(raw), tree, step


def _plain(tree):
  """Nested dicts of arrays (the face model's dataclass, if restored as one, as its fields)."""
  if isinstance(tree, dict):
    return {k: _plain(v) for k, v in tree.items()}
  if hasattr(tree, "__dataclass_fields__"):
    return {k: _plain(getattr(tree, k)) for k in tree.__dataclass_fields__}
  return tree


def quantize(a):
  """Symmetric int8 with one scale per output channel (last axis): (int8 values, float32 scales)."""
  scale = np.abs(a).reshape(-1, a.shape[-1]).max(0) / 127.0
  scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
  return np.clip(np.round(a / scale), -127, 127).astype(np.int8), scale


def dequantize(q, scale):
  return q.astype(np.float32) * scale


def _stored(key, a):
  if key.startswith(QUANTIZED) and a.dtype == np.float32 and a.ndim >= 2 and a.size >= QUANT_MIN:
    q, scale = quantize(a)
    return {key + Q8: q, key + SCALE: scale}
  return {key: a}


def _restored(flat):
  out = {k: v for k, v in flat.items() if not k.endswith((Q8, SCALE))}
  for k in flat:
    if k.endswith(Q8):
      base = k[:-len(Q8)]
      out[base] = dequantize(flat[k], flat[base + SCALE])
  return out


def _compact(a):
  """float64 leaves (none are needed at that precision) stored as float32."""
  return a.astype(np.float32) if a.dtype == np.float64 else a


@cli
def main(argv=None):
  parser = cli_lib.parser("jaxface.pretrained", description=__doc__)
  parser.add_argument("--workdir", required=True, help="a configs/disco.py training workdir")
  parser.add_argument("--out", required=True, help="folder to write config.json and weights.npz into")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
  parser.add_argument("--rnet", default=None, help="bundle this configs/rnet.py workdir's R-Net instead of the run's "
                      "(same architecture), e.g. an independent measuring R-Net trained with render_mix")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  out, step, size = export(args.workdir, args.out, args.step, args.rnet)
  print(f"exported step {step} of {args.workdir} to {out} ({size / 2 ** 20:.1f} MiB)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
