"""Identity disentanglement by latent mapping (Nitzan et al. 2020) on a frozen jaxface StyleGAN2.

One step, from one forward pass:
  z_id   = E_id(I_id)                 frozen identity net, unit norm, constant
  z_attr = E_attr(I_attr)             trainable
  w      = M([z_id, z_attr])          trainable; one w copied to every style layer (W, not W+)
  I_out  = G(w)                       frozen generator, constant noise
  non-adversarial (Adam #1, lr):      w_id L1(E_id(I_out), z_id) + w_lnd MSE(lnd(I_out), lnd(I_attr)) [+ w_pix
                                      (0.84 (1 - MS-SSIM) + 0.16 masked L1)(I_out, I_attr) on reconstruction steps]
  adversarial, every 2nd step:        Adam #2 (0.1 lr) on w_gan softplus(-D(w)); Adam #3 (0.4 lr) on D's logistic
                                      loss + R1 (γ/2 E|∇D(w_real)|², every D step) with real w from the generator
Steps with step % cross_every == 0 pair two different generated faces (I_attr != I_id, no pixel loss); the others
reconstruct one face (I_attr = I_id). Both gradient sets are taken at the step's starting parameters and applied
in that order, as the original applies them from one tape.
The generator's workdir and fingerprint are recorded in the config, so a mapper is never used with another
generator (jaxface.swap checks).
"""

import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxface import assets
from jaxface.convert import unflatten
from jaxface.errors import ConfigError, UserError
from jaxface.losses import adversarial as adv_losses
from jaxface.losses import id_mapping as losses
from jaxface.runs import generator_samples as gs
from jaxface.runs import id_mapping_experts as experts_lib
from jaxface.runs.id_mapping import generator, mapper_fn, networks, swap_fn, synthesize_fn, to_float
from jaxface.train import experts as bootstrap

EVALS = ("id_mapping",)  # evaluators when the config names none (jaxface/train/evaluators.py)


# ------------------------------------------------------------------------------------------------- generator


# ------------------------------------------------------------------------------------------------- prepare

def _bootstrap_experts(config, gen, log):
  """Empty synthetic expert workdirs -> trained into the cache with the DiscoFaceGAN bootstraps of preset
  config.experts.bootstrap_preset, in the generator's synthetic world."""
  e = config.experts
  todo = [n for n in ("rnet", "idnet") if not e[n] and (n == "rnet" or e.identity == "synthetic")]
  if not todo:
    return
  gdata = gen.config.data
  if gdata.get("kind") != "synthetic":
    raise ConfigError(f"the generator was not trained on the synthetic world, so no synthetic expert can be "
                      f"bootstrapped; pass --config.experts.{todo[0]}=WORKDIR (a configs/{todo[0]}.py run).")
  table = bootstrap.preset_table(e.bootstrap_preset, int(gen.resolution))
  for name in todo:
    e[name] = bootstrap.bootstrap(name, table[name], table[f"{name}_overrides"], gdata, config.seed, log)


def _data_folder(config, gen):
  d = config.samples
  key = repr((os.path.abspath(gen.workdir), gen.step, gs.fingerprint(gen.params), d.truncation_psi,
              d.truncation_layers, d.seed, d.num_images + d.num_val))
  return os.path.join(assets.cache_dir(), "generated", hashlib.sha256(key.encode()).hexdigest()[:16])


def prepare(config, log=print):
  """Resolves the generator step, trains missing synthetic experts, generates the (image, w) set if missing."""
  log = log or (lambda *_: None)
  experts_lib.validate(config)
  if config.samples.num_images < config.batch_size or config.samples.num_val < 1:
    raise ConfigError(f"samples.num_images={config.samples.num_images} must be >= batch_size ({config.batch_size}) and "
                      f"samples.num_val={config.samples.num_val} >= 1.")
  gen = generator(config)
  config.generator.workdir = os.path.abspath(config.generator.workdir)
  config.generator.step = int(gen.step)
  config.generator.fingerprint = str(gs.fingerprint(gen.params))
  _bootstrap_experts(config, gen, log)
  if not config.samples.path:
    config.samples.path = _data_folder(config, gen)
  total = config.samples.num_images + config.samples.num_val
  path = config.samples.path
  if not os.path.isfile(os.path.join(path, "meta.json")) and jax.process_count() > 1:
    raise ConfigError("multi-host runs do not generate data; generate it once (a single-host run) and pass "
                      "--config.samples.path.")

  def generate():
    log(f"[data] sampling {total} (image, w) pairs from the generator into {path}")
    gs.generate(gen, path, total, seed=config.samples.seed, log=log)

  assets.build_once("generated-" + os.path.basename(os.path.normpath(path)),
                    lambda: os.path.isfile(os.path.join(path, "meta.json")), generate)
  images, _, meta = gs.open_samples(config.samples.path, gen)
  if meta["num"] < total:
    raise ConfigError(f"{config.samples.path} holds {meta['num']} samples; the config needs num_images + num_val = "
                      f"{total}. Leave samples.path empty (or generate more).")
  return config


# ------------------------------------------------------------------------------------------------- data

class PairBatches:
  """Global batches {id, attr: uint8 images, real_w: [B, w_dim]}, deterministic in (seed, step): the state is the
  step counter. attr rows are other training images than the batch's id rows (the original's cross pairs); on
  reconstruction steps the step itself uses id as attr."""

  def __init__(self, config, process_index=0, process_count=1):
    self.images, self.ws, _ = gs.open_samples(config.samples.path)
    self.n, self.seed = int(config.samples.num_images), config.seed
    if config.batch_size % process_count:
      raise ConfigError(f"batch_size={config.batch_size} must divide over {process_count} processes.")
    self.batch, self.local = config.batch_size, config.batch_size // process_count
    self.offset = process_index * self.local
    self.step = 0

  def __iter__(self):
    return self

  def indices(self, step):
    r = np.random.default_rng([self.seed, 11, step])
    ids = r.choice(self.n, self.batch, replace=False)
    pool = np.setdiff1d(np.arange(self.n), ids)
    attrs = pool[r.integers(len(pool), size=self.batch)]
    real = r.integers(self.ws.shape[0], size=self.batch)  # the original draws real w from every generated row
    return ids, attrs, real

  def __next__(self):
    ids, attrs, real = (a[self.offset:self.offset + self.local] for a in self.indices(self.step))
    self.step += 1
    return {"id": self.images[ids], "attr": self.images[attrs],
            "real_w": np.asarray(self.ws[real, 0], np.float32)}

  def get_state(self):
    return {"step": self.step, "batch": self.batch}

  def set_state(self, state):
    if state.get("batch") != self.batch:
      raise UserError("the saved data position was made with another batch size")
    self.step = int(state["step"])


def make_data(config):
  return PairBatches(config, jax.process_index(), jax.process_count())


# ------------------------------------------------------------------------------------------------- state


def optimizers(config):
  o = config.optim
  adam = lambda lr: optax.adam(lr, b1=o.beta1, b2=o.beta2, eps=o.eps)
  return adam(o.lr), adam(o.lr * o.adv_lr_mul), adam(o.lr * o.d_lr_mul)


def _inception_init(params):
  """The attribute encoder's InceptionV3 starts from the ImageNet-trained FID Inception (the original starts
  from Keras' ImageNet weights)."""
  loaded = unflatten({k: v for k, v in assets.load_params("fid_inception").items() if not k.startswith("__")})
  return {"inception": jax.tree.map(jnp.asarray, loaded)} if "inception" in params else params


def constants(config):
  gen = generator(config)
  return {"frozen": dict(experts_lib.load(config), G=gen.params)}


def init_state(config, rng):
  enc, mapper, disc = networks(config)
  gen = generator(config)
  id_dim = experts_lib.functions(config).id_dim
  k_e, k_m, k_d = jax.random.split(rng, 3)
  r = gen.resolution
  enc_p = enc.init(k_e, jnp.zeros((1, r, r, 3), jnp.float32))["params"]
  if config.model.attr_encoder == "inception":
    enc_p = _inception_init(enc_p)
  attr_dim = jax.eval_shape(lambda p: enc.apply({"params": p}, jnp.zeros((1, r, r, 3))), enc_p).shape[-1]
  params = {"enc": enc_p, "map": mapper.init(k_m, jnp.zeros((1, id_dim + attr_dim), jnp.float32))["params"]}
  d_params = disc.init(k_d, jnp.zeros((1, gen.w_dim), jnp.float32))["params"]
  tx, tx_adv, tx_d = optimizers(config)
  return {"params": params, "D": d_params, "opt": tx.init(params), "opt_adv": tx_adv.init(params),
          "opt_D": tx_d.init(d_params), "step": jnp.zeros((), jnp.int32)}


def phase(config, step):
  """(cross-identity step, adversarial step): the original's step % 3 and step % 2 schedule."""
  s = config.schedule
  cross = bool(s.cross_every) and step % int(s.cross_every) == 0
  adv = config.loss.w_gan > 0 and (bool(s.unified) or step % int(s.adv_every) == 0)
  return (cross, adv)


def train_step(config):
  _, _, disc = networks(config)
  gen = generator(config)
  ex, forward, synth = experts_lib.functions(config), mapper_fn(config), synthesize_fn(gen)
  tx, tx_adv, tx_d = optimizers(config)
  L, s, res = config.loss, config.schedule, gen.resolution
  mask = losses.inverse_gaussian_mask(res, L.mask_sigma or None)
  w_gan = L.w_gan * (0.5 if s.unified else 1.0)

  def step(state, batch, rng, phase):
    del rng
    cross, adv = phase
    frozen, params = state["frozen"], state["params"]
    x_id = to_float(batch["id"])
    x_attr = to_float(batch["attr"]) if cross else x_id
    lm_attr = jax.lax.stop_gradient(ex.landmarks(frozen, x_attr))

    def nonadv(p):
      w, z_id = forward(p, frozen, x_id, x_attr)
      out = synth(frozen["G"], w)
      terms = {"id": losses.embedding_l1(ex.identity(frozen, out), z_id),
               "landmarks": losses.landmark_mse(ex.landmarks(frozen, out), lm_attr, res)}
      total = L.w_id * terms["id"] + L.w_landmarks * terms["landmarks"]
      if not cross:
        terms["pixel"] = losses.pixel_loss(out, x_attr, mask, L.ssim_mix)
        total = total + L.w_pixel * terms["pixel"]
      return total, (terms, w)

    (loss, (terms, w_fake)), grads = jax.value_and_grad(nonadv, has_aux=True)(params)
    updates, opt = tx.update(grads, state["opt"], params)
    new = dict(state, params=optax.apply_updates(params, updates), opt=opt, step=state["step"] + 1)
    metrics = {"loss": loss, **{f"loss_{k}": v for k, v in terms.items()}}
    if adv:
      d_apply = lambda d, w: disc.apply({"params": d}, w)
      g_adv = lambda p: w_gan * adv_losses.g_nonsaturating(d_apply(state["D"], forward(p, frozen, x_id, x_attr)[0]))
      loss_adv, grads_adv = jax.value_and_grad(g_adv)(params)  # at the step's starting parameters (one tape)
      updates, opt_adv = tx_adv.update(grads_adv, state["opt_adv"], new["params"])
      new.update(params=optax.apply_updates(new["params"], updates), opt_adv=opt_adv)
      real_w, fake_w = batch["real_w"].astype(jnp.float32), jax.lax.stop_gradient(w_fake)

      def d_loss(d):
        logistic = adv_losses.d_logistic(d_apply(d, real_w), d_apply(d, fake_w))
        r1 = adv_losses.r1_penalty(lambda w: d_apply(d, w), real_w) if L.r1_gamma > 0 else jnp.zeros(())
        return w_gan * logistic + 0.5 * L.r1_gamma * r1, (logistic, r1)

      (_, (logistic, r1)), grads_d = jax.value_and_grad(d_loss, has_aux=True)(state["D"])
      updates, opt_d = tx_d.update(grads_d, state["opt_D"], state["D"])
      new.update(D=optax.apply_updates(state["D"], updates), opt_D=opt_d)
      metrics.update(loss_G_adv=loss_adv / max(w_gan, 1e-12), loss_D=logistic, r1_penalty=r1)
    return new, metrics

  return step


# ------------------------------------------------------------------------------------------------- outputs


def samples(config):
  """A swap grid at fixed held-out faces: row i = identity i, column j = attributes of face j."""
  n = int(config.log.num_samples)
  images, _, _ = gs.open_samples(config.samples.path)
  first = int(config.samples.num_images)
  if images.shape[0] - first < 2 * n:
    raise ConfigError(f"log.num_samples={n} needs {2 * n} held-out images; samples.num_val is {config.samples.num_val}.")
  ids = jnp.asarray(np.repeat(images[first:first + n], n, 0))
  attrs = jnp.asarray(np.tile(images[first + n:first + 2 * n], (n, 1, 1, 1)))
  swap = swap_fn(config)
  return lambda state: swap(state, to_float(ids), to_float(attrs))
