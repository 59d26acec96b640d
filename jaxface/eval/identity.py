"""Which identity network serves the synthetic world best? Verification ROC-AUC on held-out identity pairs.

Pairs: half share an identity (two different samples: expression, pose, light, background differ), half are two
different identities, all drawn from identities no trained net has seen (`first_identity` .. `num_identities`).
Each option embeds both images; the score is the similarity the network is made for (cosine for the synthetic
net and ArcFace, minus the Euclidean distance for dlib, whose threshold is distance 0.6); ROC-AUC is the
probability that a random same-identity pair scores above a random different-identity pair (ties count half).

Options: `dlib` (registry-shipped descriptor; the render is cut to a dlib-style 150x150 chip by a similarity
transform from its eye and mouth landmarks, i.e. upscaled from the render resolution), `synthetic` (a
configs/idnet.py workdir), `arcface` (only with the user's weights: insightface iresnet .onnx/.pth).

    python -m jaxface.eval.identity --idnet-workdir workdirs/idnet [--arcface PATH] [--pairs 1000 --resolution 64]
"""

import json

import numpy as np

from jaxface import assets
from jaxface import cli as cli_lib
from jaxface.cli import lazy_import, progress
from jaxface.data import synthetic
from jaxface.errors import ConfigError, UserError, cli

jax = lazy_import("jax")  # imported on first use: `--help` and argument mistakes answer without loading JAX
jnp = lazy_import("jax.numpy")

CHIP = 150
# dlib-style chip framing (fractions of the chip): eye centres and mouth centre after alignment.
CHIP_LEFT_EYE, CHIP_RIGHT_EYE, CHIP_MOUTH = (0.35, 0.40), (0.65, 0.40), (0.50, 0.74)


def roc_auc(scores, labels):
  """Area under the ROC curve = P(score_pos > score_neg) + P(tie) / 2 (Mann-Whitney, average ranks for ties)."""
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
  n_pos, n_neg = labels.sum(), (~labels).sum()
  if n_pos == 0 or n_neg == 0:
    raise ConfigError("ROC-AUC needs both positive and negative pairs.")
  order = np.argsort(scores, kind="mergesort")
  ranks = np.empty(len(scores))
  sorted_scores = scores[order]
  i = 0
  while i < len(scores):  # average ranks over runs of equal scores
    j = i
    while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
      j += 1
    ranks[order[i:j + 1]] = (i + j) / 2 + 1
    i = j + 1
  return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def make_pairs(num_pairs, first_identity, num_identities, world, seed=0):
  """Factor batches (a, b) and labels [P] (1 = same identity) over identities [first_identity, num_identities)."""
  from jaxface.data import synthetic_factors as sf  # JAX: loaded once the command runs, not for --help
  from jaxface.runs.idnet import identity_sample  # JAX: loaded once the command runs, not for --help
  world = sf.as_world_config(world)
  if num_identities - first_identity < 2 or num_pairs < 2:
    raise ConfigError(f"need >= 2 held-out identities and pairs (identities [{first_identity}, {num_identities}), "
                      f"{num_pairs} pairs).")
  r = np.random.default_rng([seed, 11])
  labels = np.arange(num_pairs) % 2 == 0
  ka = r.integers(first_identity, num_identities, num_pairs)
  shift = r.integers(1, num_identities - first_identity, num_pairs)  # a different identity, uniformly
  kb = np.where(labels, ka, first_identity + (ka - first_identity + shift) % (num_identities - first_identity))
  # Sample indices far beyond any training run's (training draws from [0, 2^31)); distinct within a pair.
  ia, ib = 2**31 + 2 * np.arange(num_pairs), 2**31 + 2 * np.arange(num_pairs) + 1
  a = sf.stack([identity_sample(int(k), int(i), world) for k, i in zip(ka, ia)])
  b = sf.stack([identity_sample(int(k), int(i), world) for k, i in zip(kb, ib)])
  return a, b, labels.astype(np.int32)


def _similarity(src, dst):
  """Least-squares similarity transform (2x2 matrix, translation) mapping src points [K, 2] onto dst [K, 2]."""
  ms, md = src.mean(0), dst.mean(0)
  s, d = src - ms, dst - md
  a = (s * d).sum() / (s * s).sum()
  b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / (s * s).sum()
  m = jnp.array([[a, -b], [b, a]])
  return m, md - m @ ms


def dlib_chip(image, landmarks68, size=CHIP):
  """One render [R, R, 3] (0..1) -> a dlib-style chip [size, size, 3] in 0..255 (bilinear)."""
  lm = landmarks68
  src = jnp.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[48:68].mean(0)])  # subject's right eye = image left
  dst = jnp.array([CHIP_LEFT_EYE, CHIP_RIGHT_EYE, CHIP_MOUTH]) * size
  m, t = _similarity(dst, src)  # chip pixel -> image pixel
  yy, xx = jnp.meshgrid(jnp.arange(size) + 0.5, jnp.arange(size) + 0.5, indexing="ij")
  pts = jnp.stack([xx.ravel(), yy.ravel()], -1) @ m.T + t
  coords = [pts[:, 1] - 0.5, pts[:, 0] - 0.5]
  chan = [jax.scipy.ndimage.map_coordinates(image[..., c], coords, order=1, mode="nearest") for c in range(3)]
  return jnp.stack(chan, -1).reshape(size, size, 3) * 255.0


def dlib_embedder(dtype=None):
  """(embed fn on renders, score fn) for the registry dlib descriptor (float32 unless `dtype`)."""
  dtype = dtype or jnp.float32
  from jaxface.models import idnet  # JAX: loaded once the command runs, not for --help
  variables = idnet.dlib_params(assets.load_params("dlib_resnet"))
  net = idnet.DlibResNet(dtype)

  def embed(out):
    chips = jax.vmap(dlib_chip)(out["image"], out["landmarks68"])
    return net.apply(variables, chips)
  return embed, lambda a, b: -jnp.linalg.norm(a - b, axis=-1)


def synthetic_embedder(fn):
  """(embed fn on renders, score fn) for a unit-embedding net on full renders in [-1, 1] (configs/idnet.py)."""
  return (lambda out: fn(out["image"] * 2.0 - 1.0)), (lambda a, b: jnp.sum(a * b, -1))


def arcface_embedder(path):
  """(embed fn, score fn) for the user's ArcFace iresnet on 112x112 chips (the dlib-style chip, resized)."""
  from jaxface.models import idnet  # JAX: loaded once the command runs, not for --help
  net, variables = idnet.arcface_from_flat(assets.load_params("arcface", path))

  def embed(out):
    chips = jax.vmap(lambda im, lm: dlib_chip(im, lm, 112))(out["image"], out["landmarks68"])
    return id_unit(net.apply(variables, chips / 127.5 - 1.0))
  return embed, lambda a, b: jnp.sum(a * b, -1)


def id_unit(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-10)


def verify(embedder, pairs, world, resolution, batch_size=50):
  """ROC-AUC (and the score gap) of one option on `pairs` rendered at `resolution`."""
  embed, score = embedder
  a, b, labels = pairs

  @jax.jit
  def scores(fa, fb):
    oa = synthetic.render_batch(fa, resolution, world)
    ob = synthetic.render_batch(fb, resolution, world)
    return score(embed(oa), embed(ob))

  n = len(labels)
  out = []
  for s in progress(range(0, n, batch_size), "verification pairs"):
    idx = np.arange(s, s + batch_size) % n  # full batches: one compiled shape
    pick = lambda f: {k: f[k][idx] for k in synthetic.RENDER_KEYS}
    out.append(np.asarray(scores(pick(a), pick(b)))[:min(batch_size, n - s)])
  sc = np.concatenate(out)
  return {"roc_auc": roc_auc(sc, labels), "pairs": int(n), "resolution": int(resolution),
          "mean_score_same": float(sc[labels == 1].mean()), "mean_score_diff": float(sc[labels == 0].mean())}




def run(config, state, workdir):
  """Verification ROC-AUC on identities never trained on (jaxface/eval/identity.py)."""
  from jaxface.runs.idnet import embed_fn  # JAX: `--help` answers without loading it
  state = jax.device_get(state)
  fn = embed_fn(config, state["params"]["net"], state["batch_stats"])
  pairs = make_pairs(config.eval.num_pairs, config.eval.first_identity, config.data.num_identities,
                             config.data, seed=config.eval.seed)
  return {"synthetic_idnet": verify(synthetic_embedder(fn), pairs, config.data,
                                            config.data.resolution)}


@cli
def main(argv=None):
  p = cli_lib.parser("jaxface.eval.identity", description=__doc__.splitlines()[0])
  p.add_argument("--idnet-workdir", default="", help="workdir of a configs/idnet.py training (synthetic option)")
  p.add_argument("--arcface", default="", help="insightface iresnet weights (.onnx/.pth); omitted = not evaluated")
  p.add_argument("--no-dlib", action="store_true", help="skip the dlib descriptor")
  p.add_argument("--pairs", type=int, default=1000, help="verification pairs (half same identity)")
  p.add_argument("--resolution", type=int, default=64, help="render resolution fed to every option")
  p.add_argument("--first-identity", type=int, default=9000, help="held-out identities start here")
  p.add_argument("--num-identities", type=int, default=10_000, help="size of the synthetic identity pool")
  p.add_argument("--seed", type=int, default=0, help="pair sampling seed")
  p.add_argument("--out", default="", help="write the results as JSON here")
  args = p.parse_args(argv)
  if args.pairs < 2 or args.resolution < 16 or not 0 <= args.first_identity < args.num_identities:
    raise UserError(f"--pairs {args.pairs} must be >= 2, --resolution {args.resolution} >= 16, and --first-identity "
                    f"{args.first_identity} in [0, --num-identities {args.num_identities}).")
  world = {"num_identities": args.num_identities}
  pairs = make_pairs(args.pairs, args.first_identity, args.num_identities, world, args.seed)
  results = {}
  if not args.no_dlib:
    results["dlib"] = verify(dlib_embedder(), pairs, world, args.resolution)
  if args.idnet_workdir:
    from jaxface.runs.idnet import load_idnet  # JAX: loaded once the command runs, not for --help
    net = load_idnet(args.idnet_workdir)
    if net["resolution"] != args.resolution:
      raise ConfigError(f"the net in {args.idnet_workdir} was trained at {net['resolution']}px; pass --resolution "
                        f"{net['resolution']}.")
    results["synthetic_idnet"] = verify(synthetic_embedder(net["embed"]), pairs, world, args.resolution)
  results["arcface"] = (verify(arcface_embedder(args.arcface), pairs, world, args.resolution) if args.arcface else
                        "not evaluated: no user ArcFace weights (pass --arcface PATH)")
  text = json.dumps(results, indent=2)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text)


if __name__ == "__main__":
  main()
