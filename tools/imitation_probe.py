r"""How fast can a DiscoFaceGAN generator imitate its renders? The generator alone (no discriminator, no experts'
gradients) regresses the render of its own λ, so a recipe change's effect on the imitation signal shows in
minutes instead of hours of full training.

  python tools/imitation_probe.py --steps 800 --out probe.png [--pix-mask full] [--pose-pairs 2.0] \
      [--config configs/disco.py] [--config.key=value ...]

Prints one JSON line every 25 steps (pixel loss; median R-Net yaw error of the fakes shown inside the render's
mask, which the mask's own outline biases low: compare runs with each other, not with the trained generator's
evaluation) and writes a yaw sweep, -40..40 degrees over 7 columns, four identities, each fake row above its render
row, to --out. --pix-mask face|full: the loss compares the face region only or the whole frame against the render
on black; --pose-pairs W: half the batch is the other half with a new pose, and W weighs the loss on the pairs'
image difference (train/disco.pose_difference_loss). The experts come from the config (bootstrapped as in training).
"""

import argparse
import json
import sys
import time


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python tools/imitation_probe.py", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/disco.py", help="config file and :ARGS")
  parser.add_argument("--steps", type=int, default=800, help="generator steps")
  parser.add_argument("--pix-mask", choices=("face", "full"), default="face", help="pixel-loss region")
  parser.add_argument("--pose-pairs", type=float, default=0.0, help="weight of the pose-pair difference loss")
  parser.add_argument("--out", default="probe.png", help="the yaw-sweep PNG")
  args, rest = parser.parse_known_args(argv)

  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from PIL import Image
  from jaxface import config as config_lib
  from jaxface.losses import imitative
  from jaxface.train import disco
  from jaxface.runs import disco as disco_run
  from jaxface.runs import disco_expert_configs as dxc
  from jaxface.runs import disco_experts as dx

  config = disco.prepare(config_lib.build(args.config, config_lib.parse_overrides(rest)))
  frozen = jax.tree.map(jnp.asarray, disco.constants(config)["frozen"])
  G, experts = disco_run.generator(config), dx.functions(config)
  res, b, nd = config.model.resolution, config.batch_size, config.model.noise_dim
  pairs = args.pose_pairs > 0
  params = G.init({"params": jax.random.key(0), "noise": jax.random.key(0)},
                  jnp.zeros((1, dxc.lambda_dim(config) + nd)))["params"]
  tx = optax.adam(config.optim_G.lr, b1=config.optim_G.beta1, b2=config.optim_G.beta2, eps=config.optim_G.eps)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, key):
    k_z, k_eps, k_noise = jax.random.split(key, 3)
    blocks = experts.decode(frozen, disco._imitative_z(experts, k_z, b, pairs))
    eps = jax.random.normal(k_eps, (b // 2 if pairs else b, nd))
    eps = jnp.concatenate([eps, eps]) if pairs else eps
    t = disco_run.render_targets(experts, frozen, blocks, res)
    target, mask = t["image"] * 2 - 1, t["mask"]
    loss_mask = jnp.ones_like(mask) if args.pix_mask == "full" else mask

    def loss(p):
      fake = G.apply({"params": p}, dx.generator_input(frozen, dx.flat_lambda(blocks), eps), rngs={"noise": k_noise})
      total = imitative.pixel_loss(fake, target, loss_mask)
      if pairs:
        total = total + args.pose_pairs * disco.pose_difference_loss(fake, target)
      return total, fake

    (value, fake), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    rec = experts.recon(frozen, jnp.where(mask[..., None] > 0, fake, -1.0))
    yaw_err = jnp.rad2deg(jnp.abs(rec["coeffs"]["angle"][:, 1] - blocks["angle"][:, 1]))
    return optax.apply_updates(params, updates), opt, value, yaw_err

  t0, losses, errs = time.time(), [], []
  for i in range(args.steps):
    params, opt, value, yaw_err = step(params, opt, jax.random.key(i + 1))
    losses.append(float(value))
    errs.extend(np.asarray(yaw_err).tolist())
    if (i + 1) % 25 == 0:
      print(json.dumps(dict(step=i + 1, seconds=round(time.time() - t0), loss=round(float(np.mean(losses[-25:])), 4),
                            yaw_err_deg=round(float(np.median(errs[-200:])), 2))), flush=True)

  blocks = experts.decode(frozen, disco_run.sample_z(experts, jax.random.key(12345), 4))
  eps = jax.random.normal(jax.random.key(3), (4, nd))
  columns = []
  for yaw in np.linspace(-40, 40, 7):
    bl = dict(blocks, angle=blocks["angle"].at[:, 1].set(np.deg2rad(yaw)).at[:, 0].set(0.0))
    fake = G.apply({"params": params}, dx.generator_input(frozen, dx.flat_lambda(bl), eps), noise_mode="const")
    target = disco_run.render_targets(experts, frozen, bl, res)["image"] * 2 - 1
    columns.append(np.concatenate([np.asarray(fake), np.asarray(target)], 1))  # [4, 2R, R, 3]
  grid = np.concatenate(list(np.concatenate(columns, 2)), 0)
  Image.fromarray(((grid + 1) * 127.5).clip(0, 255).astype(np.uint8)).save(args.out)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
