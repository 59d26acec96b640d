"""Throughput of the frozen expert networks at training batch sizes: forward, and forward + input gradient
(what an identity / landmark / FID-free perceptual loss costs inside a generator step).

  python -m jaxface.bench.experts                  # all experts, batch 32
  python -m jaxface.bench.experts --batch 8 --only dlib_resnet,face_mesh --dtype bfloat16

Registry-shipped experts use their real converted weights (fetched on first use); user-weight experts
(ArcFace iresnet50, R-Net ResNet-50/18) use random weights of the real shapes, which time the same.
"""

import numpy as np

from jaxface import assets
from jaxface import cli as cli_lib
from jaxface.cli import lazy_import
from jaxface.errors import cli

# Imported on first use: `--help` and argument mistakes answer without loading JAX.
jax = lazy_import("jax")
jnp = lazy_import("jax.numpy")
common = lazy_import("jaxface.bench.common")
landmarks = lazy_import("jaxface.models.landmarks")
programs = lazy_import("jaxface.programs")



def _random_like(shapes, seed=0):
  g = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray((g.normal(size=s.shape) * 0.02).astype(s.dtype)), shapes)


def _experts(dtype):
  """name -> (build() -> (fn(params, x), params), input shape (H, W, 3), input range)."""
  def dlib():
    from jaxface.models import idnet  # JAX: loaded once the command runs, not for --help
    return idnet.DlibResNet(dtype).apply, idnet.dlib_params(assets.load_params("dlib_resnet"))

  def mesh():
    from jaxface.models import landmarks  # JAX: loaded once the command runs, not for --help
    params, graph = landmarks.split(assets.load_params("face_landmark"))
    return (lambda p, x: landmarks.face_mesh(p, graph, x, dtype)[0]), params

  def blazeface():
    from jaxface.models import landmarks  # JAX: loaded once the command runs, not for --help
    params, graph = landmarks.split(assets.load_params("blazeface"))
    return (lambda p, x: landmarks.run_graph(graph, p, x, dtype=dtype)[0]), params

  def inception():
    from jaxface.models import inception as inc  # JAX: loaded once the command runs, not for --help
    apply, variables = inc.load(dtype)
    return (lambda v, x: inc.InceptionV3(dtype).apply(v, x)), variables

  def flax_random(module, size):
    def build():
      x = jnp.zeros((1, size, size, 3))
      return module.apply, _random_like(jax.eval_shape(module.init, jax.random.key(0), x))
    return build

  from jaxface.models import idnet, rnet  # JAX: loaded once the command runs, not for --help
  return {
      "dlib_resnet": (dlib, 150),
      "face_mesh": (mesh, 192),
      "blazeface": (blazeface, 128),
      "fid_inception": (inception, 299),
      "arcface_r50": (flax_random(idnet.IResNet((3, 4, 14, 3), dtype=dtype), 112), 112),
      "rnet_r50": (flax_random(rnet.RNet(depth=50, dtype=dtype), 224), 224),
      "rnet_r18": (flax_random(rnet.RNet(depth=18, dtype=dtype), 224), 224),
  }


@cli
def main(argv=None):
  ap = cli_lib.parser("jaxface.bench.experts", description=__doc__)
  ap.add_argument("--batch", type=int, default=32, help="images per call (training batch size)")
  ap.add_argument("--only", default="", help="comma-separated expert names (default: all)")
  ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="activation dtype")
  ap.add_argument("--iters", type=int, default=5, help="timed calls per measurement")
  args = ap.parse_args(argv)
  dtype = jnp.dtype(args.dtype)
  experts = _experts(dtype)
  names = [n for n in args.only.split(",") if n] or list(experts)
  rows = []
  for name in names:
    build, size = experts[name]
    fn, params = build()
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (args.batch, size, size, 3)).astype(np.float32))
    # TFLite-graph experts compile as they are used alone (programs.jit: exact on XLA:CPU).
    jit = programs.jit if name in ("face_mesh", "blazeface") else jax.jit
    fwd = jit(fn)
    grad = jit(jax.grad(lambda p, x: jnp.sum(fn(p, x).astype(jnp.float32) ** 2), argnums=1))
    row = {"expert": name, "batch": args.batch, "size": size, "dtype": args.dtype}
    for kind, f in (("fwd", fwd), ("fwd+grad", grad)):
      sec = common.time_fn(f, params, x, warmup=1, iters=args.iters)
      flops = common.flops_of(f, params, x)
      row[f"{kind}_img_s"] = args.batch / sec
      row[f"{kind}_ms"] = sec * 1e3
      if flops:
        row[f"{kind}_tflops"] = flops / sec / 1e12
    rows.append(row)
    common.record("experts", {"expert": name, "batch": args.batch, "size": size, "dtype": args.dtype},
                  {k: v for k, v in row.items() if k not in ("expert", "batch", "size", "dtype")})
  common.print_table(rows, ["expert", "batch", "size", "dtype", "fwd_ms", "fwd_img_s", "fwd+grad_ms",
                            "fwd+grad_img_s", "fwd_tflops"])


if __name__ == "__main__":
  main()
