"""DiscoFaceGAN (Deng et al., CVPR 2020) on the shared loop, with StyleGAN2 modules.

z = (z_id, z_exp, z_gamma, z_angle) ~ N(0, I) -> frozen VAE decoders -> λ = [id|tex|exp|angle|gamma];
the generator maps λ ‖ ε (ε ~ N(0, I_noise)) with no input normalization. Per step:
  G   non-saturating adversarial loss + imitative losses against the render of λ (translation 0):
        pixel phase (kimg < schedule.pix_kimg): w_pix · masked pixel loss at loss.pix_res (the released code's
          "resolution <= 32" phase; without progressive growing we downsample instead); loss.pix_mask "full"
          compares the whole frame with the render on black instead of the face region only;
        afterwards: w_lm landmarks + w_gamma lighting (R-Net) + w_id identity (clipped) + w_skin face colour
          (+ loss.w_pix_late · the masked pixel loss at full size, beyond the released code);
      stage 2 (kimg >= schedule.stage2_kimg): w_lm drops to loss.w_lm_stage2 and contrastive pairs are added
      (expression warp, lighting consistency, and, beyond the released code, a pose pair and an identity contrast
      when their weights are set); the pair fakes get the adversarial loss too.
  D   logistic loss on the reals vs the G step's fakes (in stage 2 a second logistic term on the pair fakes, as
      released), R1 on reals every `loss.r1_interval` steps (released: every step, gamma 10).
  EMA of G (half-life loss.ema_kimg).
The static phase is (stage, pixel_phase, r1). Everything frozen (priors, R-Net, identity net, parser, face model)
lives in state["frozen"] behind stop_gradient (runs/disco_experts.py).
"""

import jax
import jax.numpy as jnp
import optax

from jaxface.data import batches as common
from jaxface.errors import ConfigError
from jaxface.losses import adversarial, contrastive, imitative
from jaxface.render import render as render_lib
from jaxface.runs import disco_expert_configs as dxc
from jaxface.runs import disco_experts as dx
from jaxface.runs.disco import generator, render_targets, sample_z
from jaxface.train import experts as bootstrap
from jaxface.train import stylegan2 as sg2_train

EVALS = ("disco",)  # evaluators when the config names none (jaxface/train/evaluators.py)

PAIR_KINDS = ("exp", "gamma", "angle")  # the factor each contrastive pair changes (loss names: exp, light, pose)


# ------------------------------------------------------------------------------------------------- models


def discriminator(config):
  return sg2_train.discriminator(config)  # the same D as the StyleGAN2 baseline (same config fields)


def validate(config):
  sg2_train.validate(config)  # resolution checks
  res = config.model.resolution
  if config.loss.pix_res > res or config.loss.pix_res & (config.loss.pix_res - 1):
    raise ConfigError(f"config.loss.pix_res={config.loss.pix_res} must be a power of two <= the resolution {res}.")
  if config.loss.get("pix_mask", "face") not in ("face", "full"):
    raise ConfigError(f"config.loss.pix_mask={config.loss.get('pix_mask')!r} must be 'face' (the render's face "
                      "region, as released) or 'full' (the whole frame against the render on black).")
  if config.model.get("lambda_norm", "") not in dx.LAMBDA_NORMS:
    raise ConfigError(f"config.model.lambda_norm={config.model.get('lambda_norm')!r} must be one of "
                      f"{', '.join(repr(n) for n in dx.LAMBDA_NORMS)}.")
  if config.loss.get("pix_diff_mask", "frame") not in ("frame", "agree"):
    raise ConfigError(f"config.loss.pix_diff_mask={config.loss.get('pix_diff_mask')!r} must be 'frame' (the pose "
                      f"pairs' difference over the whole frame) or 'agree' (where both renders agree on face or "
                      f"background).")
  if config.loss.get("w_pix_diff", 0.0) > 0 and config.batch_size % 2:
    raise ConfigError(f"config.loss.w_pix_diff > 0 draws the imitative batch as pose pairs: config.batch_size="
                      f"{config.batch_size} must be even (or set --config.loss.w_pix_diff=0).")
  if config.experts.source not in ("synthetic", "bfm"):
    raise ConfigError(f"config.experts.source={config.experts.source!r} must be 'synthetic' or 'bfm'.")


def optimizer(opt_cfg):
  return optax.adam(opt_cfg.lr, b1=opt_cfg.beta1, b2=opt_cfg.beta2, eps=opt_cfg.eps)


# ------------------------------------------------------------------------------------------------- setup

def prepare(config):
  """Host-side, before the state exists: trains missing bootstrap experts into the cache and records their
  workdirs in the config (so config.json names every expert the run used)."""
  validate(config)
  config = dxc.record_configs(bootstrap.resolve(config))
  dx.load(config)  # read the experts now, on the host (init_state runs under a trace)
  return config


def init_state(config, rng):
  """Everything trained; the frozen experts join as `constants` (the loop places them, unchanged)."""
  validate(config)
  G, D = generator(config), discriminator(config)
  kg, kd = jax.random.split(rng)
  z = jnp.zeros((1, dxc.lambda_dim(config) + config.model.noise_dim), jnp.float32)
  img = jnp.zeros((1, config.model.resolution, config.model.resolution, 3), jnp.float32)
  g_params = G.init({"params": kg, "noise": kg}, z)["params"]
  d_params = D.init(kd, img)["params"]
  return {
      "G": {"params": g_params, "opt": optimizer(config.optim_G).init(g_params)},
      "D": {"params": d_params, "opt": optimizer(config.optim_D).init(d_params)},
      "G_ema": g_params,
      "step": jnp.zeros((), jnp.int32),
  }


def constants(config):
  """state["frozen"]: priors, R-Net, identity net, parser and face model, read from disk (runs/disco_experts.py)."""
  return {"frozen": dx.load(config)}


def kimg_at(config, step):
  """Thousands of real images shown before `step` (1-based) runs."""
  return (step - 1) * config.batch_size / 1000.0


def phase(config, step):
  """(stage 1|2, pixel phase, R1 this step)."""
  kimg = kimg_at(config, step)
  stage = 2 if kimg >= config.schedule.stage2_kimg else 1
  pixel = bool(kimg < config.schedule.pix_kimg)
  r1 = bool(config.loss.r1_gamma > 0 and step % config.loss.r1_interval == 0)
  return (stage, pixel, r1)


# ------------------------------------------------------------------------------------------------- sampling


def contrastive_batch(experts, frozen, key, n_pairs, kinds):
  """Pairs sharing every factor but one: ({kind: (blocks_a, blocks_b)}, λ [2·n_pairs·len(kinds), D]) with, per
  kind, the n A rows then the n B rows. The caller gives each pair one shared ε."""
  pairs, lams = {}, []
  for i, kind in enumerate(kinds):
    ka, kb = jax.random.split(jax.random.fold_in(key, i))
    z_a = sample_z(experts, ka, n_pairs)
    z_b = dict(z_a)
    z_b[kind] = jax.random.normal(kb, z_a[kind].shape)
    a, b = experts.decode(frozen, z_a), experts.decode(frozen, z_b)
    pairs[kind] = (a, b)
    lams += [dx.flat_lambda(a), dx.flat_lambda(b)]
  return pairs, jax.lax.stop_gradient(jnp.concatenate(lams, 0))


def _box_down(x, size):
  """[B, H, W, C] -> [B, size, size, C] by averaging f x f blocks (H = W = f·size)."""
  b, h, w, c = x.shape
  f = h // size
  return x.reshape(b, size, f, size, f, c).mean((2, 4)) if f > 1 else x


# ------------------------------------------------------------------------------------------------- step

def _pair_kinds(config):
  kinds = []
  if config.loss.w_exp_warp > 0 or config.loss.w_id_contrast > 0:
    kinds.append("exp")
  if config.loss.w_gamma_change > 0:
    kinds.append("gamma")
  if config.loss.w_pose > 0:
    kinds.append("angle")
  return tuple(kinds)


def _loss_weights(config, stage):
  l = config.loss
  imit = imitative.imitative_weights(stage, w_lm=l.w_lm if stage == 1 else l.w_lm_stage2, w_gamma=l.w_gamma,
                                     w_id=l.w_id, w_skin=l.w_skin, w_pix=l.w_pix, id_clip=l.id_clip)
  con = contrastive.contrastive_weights(
      w_exp_warp=l.w_exp_warp, w_gamma_change=l.w_gamma_change, light_hair=l.light_hair, light_id=l.light_id,
      light_lm=l.light_lm, w_pose=l.w_pose, pose_id=l.pose_id, pose_warp=l.pose_warp, w_id_contrast=l.w_id_contrast)
  return imit, con


def train_step(config):
  G, D = generator(config), discriminator(config)
  experts = dx.functions(config)
  l, res, batch_size = config.loss, config.model.resolution, config.batch_size
  noise_dim, n_pairs, kinds = config.model.noise_dim, config.schedule.pairs, _pair_kinds(config)
  tx_g, tx_d = optimizer(config.optim_G), optimizer(config.optim_D)

  def synth(g_params, frozen, lam, eps, key):
    return G.apply({"params": g_params}, dx.generator_input(frozen, lam, eps), rngs={"noise": key})

  def step(state, batch, rng, phase):
    stage, pixel, do_r1 = phase
    # loss.pixel_phase_gan false: the pixel phase is imitation alone (no adversarial term, D rests), so the
    # discriminator cannot fight the full-frame target; D starts when the phase ends.
    gan = not pixel or l.get("pixel_phase_gan", True)
    do_r1 = do_r1 and gan
    imit_w, con_w = _loss_weights(config, stage)
    rng = jax.random.fold_in(rng, state["step"])
    k_z, k_eps, k_noise, k_pairs, k_pnoise, k_mirror = jax.random.split(rng, 6)
    frozen = jax.lax.stop_gradient(state["frozen"])
    fns = dict(recon_fn=lambda x: experts.recon(frozen, x), id_fn=lambda x: experts.identity(frozen, x))
    metrics = {}

    # Reals: the synthetic world is rendered aligned (translation 0, as DiscoFaceGAN re-crops FFHQ); mirrored
    # with probability 1/2 as released (reals only).
    if "image" not in batch:
      batch = dict(batch, trans=jnp.zeros_like(batch["trans"]))
    reals = common.real_images(config, batch)
    if l.mirror:
      flip = jax.random.bernoulli(k_mirror, 0.5, (reals.shape[0], 1, 1, 1))
      reals = jnp.where(flip, reals[:, :, ::-1], reals)

    # Imitative batch: λ from the frozen priors, its render as the target. With loss.w_pix_diff the batch is
    # pairs (first half A, second half B: A with another pose, the same ε) whose image difference must imitate
    # the renders' difference: a signal of pose alone, with identity and colour cancelled out.
    diff = l.get("w_pix_diff", 0.0) > 0
    blocks = experts.decode(frozen, _imitative_z(experts, k_z, batch_size, diff))
    lam = jax.lax.stop_gradient(dx.flat_lambda(blocks))
    eps = jax.random.normal(k_eps, (batch_size // 2 if diff else batch_size, noise_dim))
    eps = jnp.concatenate([eps, eps]) if diff else eps
    targets = imitative.render_targets(render_targets(experts, frozen, blocks, res), blocks["gamma"])
    if pixel and l.pix_res < res:
      targets = dict(targets, image=_box_down(targets["image"], l.pix_res),
                     mask=_box_down(targets["mask"][..., None], l.pix_res)[..., 0])
    if pixel and l.get("pix_mask", "face") == "full":  # the whole frame vs the render on black: the silhouette
      targets = dict(targets, mask=jnp.ones_like(targets["mask"]))

    # Contrastive pairs (stage 2): renders for the warp flows and masks are targets, computed outside the grad.
    pair_in = None
    if stage == 2 and kinds:
      pairs, pair_lam = contrastive_batch(experts, frozen, k_pairs, n_pairs, kinds)
      pair_eps = jnp.repeat(jax.random.normal(jax.random.fold_in(k_pairs, 7), (len(kinds), 1, n_pairs, noise_dim)), 2, axis=1)
      pair_in = (pairs, pair_lam, pair_eps.reshape(-1, noise_dim), _pair_geometry(experts, frozen, pairs, res))

    def g_loss(g_params):
      fake = synth(g_params, frozen, lam, eps, k_noise)
      out = {"adv": adversarial.g_nonsaturating(D.apply({"params": state["D"]["params"]}, fake))} if gan else \
          {"adv": jnp.zeros((), jnp.float32)}
      f = _box_down(fake, l.pix_res) if (pixel and l.pix_res < res) else fake
      imit = imitative.imitative_losses(f, targets, weights=imit_w, low_res=pixel, **fns)
      out.update({f"imit_{k}": v for k, v in imit.items() if k != "total"})
      total = out["adv"] + imit["total"]
      if not pixel and l.get("w_pix_late", 0.0) > 0:  # the dense pixel signal kept on after the pixel phase
        out["imit_pix_late"] = imitative.pixel_loss(fake, targets["image"], targets["mask"])
        total = total + l.w_pix_late * out["imit_pix_late"]
      if diff and (pixel or l.get("w_pix_late", 0.0) > 0):
        agree = not pixel and l.get("pix_diff_mask", "frame") == "agree"  # the pixel phase keeps the silhouette
        out["imit_pix_diff"] = pose_difference_loss(f, targets["image"], targets["mask"] if agree else None)
        total = total + l.w_pix_diff * out["imit_pix_diff"]
      pair_fake = None
      if pair_in is not None:
        pair_fake = synth(g_params, frozen, pair_in[1], pair_in[2], k_pnoise)
        out["adv_pairs"] = adversarial.g_nonsaturating(D.apply({"params": state["D"]["params"]}, pair_fake))
        con = contrastive.contrastive_losses(
            _pair_dict(pair_fake, pair_in[3], kinds, n_pairs),
            landmark_fn=lambda x: experts.recon(frozen, x)["landmarks"],
            hair_fn=(lambda x, lm: experts.hair(frozen, x, lm)) if experts.hair else None,
            id_fn=fns["id_fn"], weights=con_w)
        out.update({f"con_{k}": v for k, v in con.items() if k != "total"})
        total = total + out["adv_pairs"] + con["total"]
      return total, (out, fake, pair_fake)

    (metrics["loss_G"], (terms, fake, pair_fake)), grads = jax.value_and_grad(g_loss, has_aux=True)(
        state["G"]["params"])
    metrics.update(terms)
    updates, g_opt = tx_g.update(grads, state["G"]["opt"], state["G"]["params"])
    g_params = optax.apply_updates(state["G"]["params"], updates)

    # D: the G step's fakes (made by G before its update, as an alternating D-then-G schedule would see them).
    fake = jax.lax.stop_gradient(fake)
    metrics.update(_control_metrics(fns["recon_fn"](fake), blocks))
    pair_fake = None if pair_fake is None else jax.lax.stop_gradient(pair_fake)

    def d_loss(d_params):
      d = lambda x: D.apply({"params": d_params}, x)
      real_logits = d(reals)
      loss = adversarial.d_logistic(real_logits, d(fake))
      if pair_fake is not None:
        loss = loss + adversarial.d_logistic(real_logits, d(pair_fake))
      r1 = jnp.zeros((), jnp.float32)
      if do_r1:
        r1 = adversarial.r1_penalty(d, reals)
        loss = loss + r1 * (l.r1_gamma / 2) * l.r1_interval
      return loss, (real_logits.mean(), r1)

    d_params, d_opt = state["D"]["params"], state["D"]["opt"]
    if gan:
      (metrics["loss_D"], (metrics["D_real"], r1)), grads = jax.value_and_grad(d_loss, has_aux=True)(d_params)
      if do_r1:
        metrics["r1_penalty"] = r1
      updates, d_opt = tx_d.update(grads, d_opt, d_params)
      d_params = optax.apply_updates(d_params, updates)

    g_ema = sg2_train.ema_update(state["G_ema"], g_params, state["step"], batch_size, l.ema_kimg, l.ema_rampup)
    new_state = dict(state, G={"params": g_params, "opt": g_opt}, D={"params": d_params, "opt": d_opt},
                     G_ema=g_ema, step=state["step"] + 1)
    return new_state, metrics

  return step


def _imitative_z(experts, key, n, pose_pairs):
  """z of the imitative batch: n independent draws, or n/2 pairs that differ only in pose (A rows, then B rows)."""
  if not pose_pairs:
    return sample_z(experts, key, n)
  z_a = sample_z(experts, key, n // 2)
  z_b = dict(z_a, angle=jax.random.normal(jax.random.fold_in(key, 1), z_a["angle"].shape))
  return {f: jnp.concatenate([z_a[f], z_b[f]]) for f in z_a}


def pose_difference_loss(fake, render, mask=None):
  """Per-pixel norm of (fake_A - fake_B) - (render_A - render_B), averaged; rows are A then B halves. Whatever A
  and B share (identity, colour, light, the background G invents) cancels, so the gradient is about the pose
  change alone. `mask` (the renders' face masks [B, R, R]) leaves out the pixels that are face in one render and
  black background in the other: there the renders' difference is face minus black, and imitating it paints a
  dark band where the turning face leaves the frame. None: the whole frame."""
  h = fake.shape[0] // 2
  d = (fake[:h] - fake[h:]) - jax.lax.stop_gradient(render[:h] - render[h:])
  norm = jnp.sqrt(jnp.sum(jnp.square(d.astype(jnp.float32)), -1) + 1e-8)
  if mask is None:
    return jnp.mean(norm)
  m = jax.lax.stop_gradient(mask.astype(jnp.float32))
  agree = m[:h] * m[h:] + (1.0 - m[:h]) * (1.0 - m[h:])  # face in both, or background in both
  return jnp.sum(agree * norm) / (jnp.sum(agree) + 1e-8)


def _control_metrics(rec, blocks):
  """Training-curve read-outs: median |R-Net yaw/pitch of the batch's fakes - the requested λ| in degrees."""
  err = jnp.rad2deg(jnp.abs(rec["coeffs"]["angle"] - blocks["angle"]))
  return {"yaw_err_deg": jnp.median(err[:, 1]), "pitch_err_deg": jnp.median(err[:, 0])}


def _pair_geometry(experts, frozen, pairs, res):
  """Per pair kind: the render masks and B->A flow (stop-gradient targets) the contrastive losses need."""
  cam, fm, out = experts.camera(res), frozen["face"], {}
  for kind, (a, b) in pairs.items():
    if kind == "gamma":
      out[kind] = {}
      continue
    ca, cb = dx.full_coeffs(a), dx.full_coeffs(b)
    ra = jax.vmap(lambda c: render_lib.render(fm, c, cam, res))(ca)
    rb = jax.vmap(lambda c: render_lib.render(fm, c, cam, res))(cb)
    flow, valid = jax.vmap(lambda x, y: render_lib.render_flow(fm, x, y, cam, res))(cb, ca)
    out[kind] = jax.lax.stop_gradient({"mask_a": ra["mask"], "mask_b": rb["mask"], "flow_ba": flow,
                                       "valid_ba": valid})
  return out


def _pair_dict(pair_fake, geometry, kinds, n):
  """Fakes [2·n·K, ...] (per kind: n A rows then n B rows) -> contrastive_losses' `pairs` argument."""
  names = {"exp": "exp", "gamma": "light", "angle": "pose"}
  out = {}
  for i, kind in enumerate(kinds):
    a, b = pair_fake[2 * i * n:(2 * i + 1) * n], pair_fake[(2 * i + 1) * n:(2 * i + 2) * n]
    entry = dict(fake_a=a, fake_b=b, **geometry[kind])
    out[names[kind]] = entry
  return out


# ------------------------------------------------------------------------------------------------- data, samples

def make_data(config):
  validate(config)
  return common.data_iterator(config)


def samples(config):
  """G_ema at fixed λ and ε (constant noise), each fake followed by the render of its λ: the grid shows how
  well the generator imitates its 3DMM targets."""
  G, experts = generator(config), dx.functions(config)
  n = max(config.log.num_samples // 2, 1)
  key = jax.random.key(config.seed + 1)

  def fn(state):
    frozen = state["frozen"]
    blocks = experts.decode(frozen, sample_z(experts, key, n))
    eps = jax.random.normal(jax.random.fold_in(key, 1), (n, config.model.noise_dim))
    fake = G.apply({"params": state["G_ema"]}, dx.generator_input(frozen, dx.flat_lambda(blocks), eps),
                   noise_mode="const")
    rendered = render_targets(experts, frozen, blocks, config.model.resolution)["image"] * 2.0 - 1.0
    return jnp.stack([fake.astype(jnp.float32), rendered], 1).reshape((2 * n,) + fake.shape[1:])

  return fn
