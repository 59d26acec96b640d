r"""DiscoFaceGAN training-step throughput against the same step as a plain StyleGAN2, and the share of the step
spent rendering targets and running the frozen experts (the target: the full step reaches >= 60% of the plain
step's img/s on one H100 at 256²).

  python -m jaxface.bench.disco --config configs/disco.py[:preset] [--steps 10] [--config.key=value ...]

For the stage-1 imitative phase and, when the run reaches it, the stage-2 phase (phase tuples (1, False, True) and
(2, False, True): no pixel phase, R1 on) it times
  full    the real step; img/s = batch_size / step time. Stage 2 also synthesizes the contrastive pairs (counted
          apart: pair_images per step, img_per_s_with_pairs).
  plain   the same step function with every imitative and contrastive weight 0: imitative_losses then calls no
          expert, the render targets feed nothing (XLA drops them) and _pair_kinds is empty (no pairs), leaving a
          StyleGAN2 step (G on λ ‖ ε, D, R1, EMA) with λ still decoded by the frozen priors.
  render  the batch's render targets (stage 2: plus the pairs' renders and warp flows), jitted alone.
  experts what the losses ask of the frozen experts, jitted alone: R-Net (landmarks, lighting) and the identity
          net forward + gradient w.r.t. a G batch of images, the identity net forward on the render targets, and
          in stage 2 the experts each pair kind calls (lighting pair: R-Net, parser, identity net) with gradient.
ratio = full img/s / plain img/s; share = (render + experts) / full. The parts run apart, so the share is an
estimate (inside the step XLA may fuse or overlap them). The plain step of both stages is one program (all
weights 0); it is timed once when the two lower to the same HLO.

Each row also carries, for the full step:
  gflops_per_img    its FLOPs (XLA's cost analysis of the compiled step, pairs included) / batch_size
  mfu_pct           its FLOP/s against the roofline of jaxface/bench/peak.py (measured on CPUs, the vendor's dense
                    peak for compute_dtype on accelerators), as jaxface.bench.train reports it
  peak_gflops, peak_source   that roofline and how it was obtained (None and the reason when unknown)
  compile_s         seconds to trace, lower and compile it (what its first call costs on top of running), with no
                    persistent compilation cache: the cold cost
  compile_s_cached  the same, from a fresh persistent cache the bench wrote the program to: what a rerun pays with
                    the cache jaxface.parallel.enable_compilation_cache sets up (None when JAX wrote no entry)
MFU and FLOPs are None where the cost analysis is unavailable. The compiles clear JAX's in-memory caches, not XLA's
own (GPU autotuning results), so stage 2's cold compile may reuse what stage 1's tuned.

Missing synthetic experts are bootstrapped into $JAXFACE_CACHE/experts on the first run (disco.prepare), as for
training. Timings depend on the experts' shapes, not their weights: --bootstrap-steps N trains missing
bootstraps for only N steps (in their own cache entries), which makes a GPU preset benchable in minutes.
"""

import copy
import sys
import time

from jaxface import cli as cli_lib
from jaxface import config as config_lib
from jaxface.cli import lazy_import
from jaxface.errors import cli

# Imported on first use: `--help` and argument mistakes answer without loading JAX.
jax = lazy_import("jax")
jnp = lazy_import("jax.numpy")
parallel = lazy_import("jaxface.parallel")
programs = lazy_import("jaxface.programs")
common = lazy_import("jaxface.bench.common")
peak_lib = lazy_import("jaxface.bench.peak")
imitative = lazy_import("jaxface.losses.imitative")
disco = lazy_import("jaxface.train.disco")
dx = lazy_import("jaxface.runs.disco_experts")
dxc = lazy_import("jaxface.runs.disco_expert_configs")
loop = lazy_import("jaxface.train.loop")

PHASES = ((1, False, True), (2, False, True))  # (stage, pixel phase, R1)
# Every weight that makes the step imitative or contrastive; all 0 = the plain StyleGAN2 step.
METHOD_WEIGHTS = ("w_lm", "w_lm_stage2", "w_gamma", "w_id", "w_skin", "w_pix", "w_exp_warp", "w_gamma_change",
                  "w_pose", "w_id_contrast")
COLUMNS = ["phase", "resolution", "batch", "step_ms", "img_per_s", "plain_ms", "plain_img_per_s", "ratio",
           "render_ms", "experts_ms", "share", "pair_images", "gflops_per_img", "mfu_pct", "compile_s",
           "compile_s_cached"]


def plain_config(config):
  """`config` with every imitative and contrastive weight 0 (the same experts, so the same state)."""
  plain = copy.deepcopy(config)
  for key in METHOD_WEIGHTS:
    plain.loss[key] = 0.0
  assert not disco._pair_kinds(plain)
  return plain


def bootstrap_steps(config, steps):
  """Shortens every bootstrap expert training to `steps` (a separate cache entry: its config differs)."""
  b = config.experts.bootstrap
  for name in dxc.NAMES:
    overrides = dict(b[f"{name}_overrides"])
    overrides.update({"total_steps": steps, "ckpt/every_steps": steps})
    b[f"{name}_overrides"] = overrides
  return config


def _render_fn(config, experts, kinds, stage):
  """(frozen, blocks, pairs) -> the step's render targets (and in stage 2 the pair geometry)."""
  res = config.model.resolution

  def fn(frozen, blocks, pairs):
    out = imitative.render_targets(disco.render_targets(experts, frozen, blocks, res), blocks["gamma"])
    if stage == 2 and kinds:
      out = (out, disco._pair_geometry(experts, frozen, pairs, res))
    return out

  return jax.jit(fn)


def _experts_fn(config, experts, kinds, stage):
  """(frozen, fakes, renders, pair_fakes) -> input gradients of the expert calls the step's losses make."""
  l = config.loss
  w_lm = l.w_lm if stage == 1 else l.w_lm_stage2

  def loss(frozen, x, pair_x):
    total = jnp.zeros((), jnp.float32)
    if w_lm or l.w_gamma:
      rec = experts.recon(frozen, x)
      total += jnp.sum(rec["landmarks"]) + jnp.sum(rec["gamma"])
    if l.w_id:
      total += jnp.sum(experts.identity(frozen, x))
    for kind, y in pair_x.items():  # what contrastive_losses calls per pair kind (fake_a ‖ fake_b)
      if kind == "gamma":
        lm = experts.recon(frozen, y)["landmarks"]
        total += jnp.sum(lm)
        if l.light_hair and experts.hair:
          total += jnp.sum(experts.hair(frozen, y, jax.lax.stop_gradient(lm)))
        if l.light_id:
          total += jnp.sum(experts.identity(frozen, y))
      elif (kind == "angle" and (l.pose_id or l.w_id_contrast)) or (kind == "exp" and l.w_id_contrast):
        total += jnp.sum(experts.identity(frozen, y))
    return total

  def fn(frozen, x, renders, pair_x):
    if stage == 1:
      pair_x = {}
    grads = jax.grad(loss, argnums=(1, 2))(frozen, x, pair_x)
    target = experts.identity(frozen, renders) if l.w_id else None  # the identity loss's render embedding
    return grads, target

  return jax.jit(fn)


def _images(key, n, res):
  return jax.random.uniform(key, (n, res, res, 3), jnp.float32, -1.0, 1.0)


def measure(config, steps=10, warmup=2, log=print):
  """Rows {phase, step_ms, img_per_s, plain_ms, plain_img_per_s, ratio, render_ms, experts_ms, share, mfu_pct,
  compile_s, ...}, one per entry of PHASES the run reaches. `config` must have gone through disco.prepare (its
  experts resolved)."""
  plain = plain_config(config)
  # Stage 2 only where the run reaches it: a preset that never does (the default) loads no stage-2 expert.
  last_stage = disco.phase(config, config.total_steps)[0]
  phases = [ph for ph in PHASES if ph[0] <= last_stage]
  mesh = parallel.make_mesh(config.mesh)
  parallel.check_batch_size(config.batch_size, mesh)
  rng = jax.random.key(config.seed)
  plan = loop.plan_state(disco, config, mesh, rng)
  shardings = plan.shardings
  jit_step = lambda cfg: programs.jit(disco.train_step(cfg), donate_argnums=(0,),
                                 out_shardings=(shardings, parallel.replicated(mesh)), static_argnames=("phase",))
  full_fn, plain_fn = jit_step(config), jit_step(plain)
  experts, kinds = dx.functions(config), disco._pair_kinds(config)
  b, res, n_pairs = config.batch_size, config.model.resolution, config.schedule.pairs
  rows, plain_secs = [], {}
  peak = peak_lib.roofline(config.compute_dtype)  # (FLOP/s, source)
  with jax.set_mesh(mesh):
    state = plan.create()
    batch = parallel.to_global(next(disco.make_data(config)), mesh)
    # The plain step is the same program in every stage when every weight is 0: time it once then.
    plain_hlo = {ph: plain_fn.lower(state, batch, rng, phase=ph).as_text() for ph in phases}
    for ph in phases:
      stage = ph[0]
      log(f"[bench.disco] phase {ph}: full step")
      # Compiled first, on clear in-memory caches: the cold figure is the real first call's. The program stays
      # compiled, so the FLOP count and the timed steps compile nothing.
      compile_sec, compile_sec_cached = common.compile_seconds(full_fn, state, batch, rng, phase=ph)
      flops = common.flops_of(full_fn, state, batch, rng, phase=ph)
      full_sec, state = common.time_steps(full_fn, state, batch, rng, ph, steps, warmup)
      same = [p for p in plain_secs if plain_hlo[p] == plain_hlo[ph]]
      if same:
        plain_sec = plain_secs[same[0]]
      else:
        log(f"[bench.disco] phase {ph}: plain step")
        plain_sec, state = common.time_steps(plain_fn, state, batch, rng, ph, steps, warmup)
      plain_secs[ph] = plain_sec

      log(f"[bench.disco] phase {ph}: render and experts")
      frozen = state["frozen"]  # the step donates the state: take the live buffers
      k_z, k_pairs, k_x, k_pair_x = jax.random.split(jax.random.fold_in(rng, stage), 4)
      blocks = experts.decode(frozen, disco.sample_z(experts, k_z, b))
      stage_kinds = kinds if stage == 2 else ()
      pairs = disco.contrastive_batch(experts, frozen, k_pairs, n_pairs, stage_kinds)[0] if stage_kinds else {}
      pair_images = 2 * n_pairs * len(stage_kinds)
      pair_x = {k: _images(jax.random.fold_in(k_pair_x, i), 2 * n_pairs, res) for i, k in enumerate(stage_kinds)}
      render_sec = common.time_fn(_render_fn(config, experts, kinds, stage), frozen, blocks, pairs, warmup=warmup,
                                  iters=steps)
      experts_sec = common.time_fn(_experts_fn(config, experts, kinds, stage), frozen, _images(k_x, b, res),
                                   _images(jax.random.fold_in(k_x, 1), b, res), pair_x, warmup=warmup, iters=steps)
      rows.append(dict(
          phase=str(ph), resolution=res, batch=b, step_ms=full_sec * 1e3, img_per_s=b / full_sec,
          plain_ms=plain_sec * 1e3, plain_img_per_s=b / plain_sec, ratio=plain_sec / full_sec,
          render_ms=render_sec * 1e3, experts_ms=experts_sec * 1e3, share=(render_sec + experts_sec) / full_sec,
          pair_images=pair_images, img_per_s_with_pairs=(b + pair_images) / full_sec,
          plain_shared=bool(same), **common.mfu_fields(flops, full_sec, b, *peak), compile_s=compile_sec,
          compile_s_cached=compile_sec_cached))
  return rows


def _preset(spec):
  first = spec.partition(":")[2].split(",")[0]
  return first if first and "=" not in first else "default"


@cli
def main(argv=None):
  parser = cli_lib.parser("jaxface.bench.disco", description=__doc__)
  parser.add_argument("--config", default="configs/disco.py", help="config file and optional :ARGS")
  parser.add_argument("--steps", type=int, default=10, help="timed calls per measurement")
  parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (the first compiles)")
  parser.add_argument("--bootstrap-steps", type=int, default=0,
                      help="train missing bootstrap experts for only N steps (0: their configured length)")
  args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  jax.config.update("jax_threefry_partitionable", True)
  config = config_lib.build(args.config, config_lib.parse_overrides(rest))
  if args.bootstrap_steps:
    bootstrap_steps(config, args.bootstrap_steps)
  t0 = time.perf_counter()
  config = disco.prepare(config)
  print(f"[bench.disco] experts ready in {time.perf_counter() - t0:.0f} s")
  rows = measure(config, args.steps, args.warmup)
  cfg = {"config": args.config, "preset": _preset(args.config), "overrides": rest,
         "resolution": config.model.resolution, "batch_size": config.batch_size,
         "compute_dtype": config.compute_dtype, "bootstrap_steps": args.bootstrap_steps}
  for row in rows:
    common.record("disco", dict(cfg, phase=row["phase"]), {k: v for k, v in row.items() if k != "phase"})
  peak_gflops, peak_source = rows[0]["peak_gflops"], rows[0]["peak_source"]
  print(f"device: {common.device_name()} x{jax.device_count()}, config: {args.config} {' '.join(rest)}, peak: "
        + (f"{peak_gflops:.4g} GFLOP/s ({peak_source})" if peak_gflops else peak_source))
  common.print_table(rows, COLUMNS)
  return rows


if __name__ == "__main__":
  main()
