"""An identity network trained on the synthetic world's identities with ArcFace's additive angular margin loss.

The third identity-network option (besides the dlib descriptor and users' ArcFace weights): a ResNet
(jaxface/models/resnet.py, torchvision layout, BatchNorm in training mode) on the rendered image, a linear
embedding, and one unit-norm class centre per training identity (jaxface/losses/identity.py). Every step draws
`batch_size` (identity, sample) pairs on the host - identity k from the first `num_train_identities` of the pool,
any sample index for expression, pose, light, background - and renders them on device inside the step. The
identities after `eval.first_identity` are never trained on; the evaluator measures verification ROC-AUC on them
(jaxface/eval/identity.py).

`load_idnet(workdir)` (jaxface/runs/idnet.py) gives DiscoFaceGAN the frozen net as a pure function
images [B, R, R, 3] in [-1, 1] -> unit embeddings [B, E].
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxface.data import synthetic
from jaxface.data import synthetic_factors as sf
from jaxface.errors import ConfigError, UserError
from jaxface.losses import identity as id_losses
from jaxface.runs import render_mix
from jaxface.runs.idnet import identity_sample, network

EVALS = ("identity",)  # evaluators when the config names none (jaxface/train/evaluators.py)


def _validate(config):
  d, e = config.data, config.eval
  if not 2 <= config.idnet.num_train_identities <= e.first_identity < d.num_identities:
    raise ConfigError(f"need 2 <= idnet.num_train_identities ({config.idnet.num_train_identities}) <= "
                      f"eval.first_identity ({e.first_identity}) < data.num_identities ({d.num_identities}): the "
                      f"held-out identities must be disjoint from the trained ones.")


def optimizer(config):
  o = config.optim
  sched = optax.warmup_cosine_decay_schedule(0.0, o.lr, o.warmup_steps, max(config.total_steps, o.warmup_steps + 1),
                                             end_value=o.lr * 0.01)
  return optax.adamw(sched, b1=o.beta1, b2=o.beta2, weight_decay=o.weight_decay)


# ------------------------------------------------------------------------------------------------- data


class IdentityBatches:
  """Global batches of factors with labels; deterministic in (seed, step), so the state is the step counter."""

  def __init__(self, config, process_index=0, process_count=1):
    self.world = sf.as_world_config(config.data)
    self.keys = synthetic.RENDER_KEYS
    self.n_ids, self.seed = config.idnet.num_train_identities, config.seed
    if config.batch_size % process_count:
      raise ConfigError(f"batch_size={config.batch_size} must divide over {process_count} processes.")
    self.batch = config.batch_size
    self.local = config.batch_size // process_count
    self.offset = process_index * self.local
    self.step = 0

  def __iter__(self):
    return self

  def __next__(self):
    r = np.random.default_rng([self.seed, 7, self.step])
    self.step += 1
    labels = r.integers(self.n_ids, size=self.batch)[self.offset:self.offset + self.local]
    index = r.integers(2**31, size=self.batch)[self.offset:self.offset + self.local]
    fs = [identity_sample(int(k), int(i), self.world) for k, i in zip(labels, index)]
    out = {k: np.stack([f[k] for f in fs]) for k in self.keys}
    out["label"] = labels.astype(np.int32)
    return out

  def get_state(self):
    return {"step": self.step, "batch": self.batch}

  def set_state(self, state):
    if state.get("batch") != self.batch:
      raise UserError("the saved data position was made with another batch size")
    self.step = int(state["step"])


def make_data(config):
  _validate(config)
  return IdentityBatches(config, jax.process_index(), jax.process_count())


def render(config, factors, rng=None):
  """Batched factors -> images [B, R, R, 3] in [-1, 1] (float32), on device. With `rng` and `render_mix` > 0,
  that fraction of the batch shows the bare face-model render of its identity instead (runs/render_mix.py)."""
  res, mix = config.data.resolution, float(config.get("render_mix", 0.0))  # configs from before: no renders
  images = synthetic.render_batch(factors, res, config.data)["image"]
  if rng is not None and mix > 0:
    renders, masks = render_mix.true_renders(factors, config.data, res)
    images = render_mix.mix_in_renders(images, renders, masks, rng, mix)
  return images * 2.0 - 1.0


# ------------------------------------------------------------------------------------------------- state, step

def init_state(config, rng):
  _validate(config)
  net = network(config, train=True)
  k_net, k_c = jax.random.split(rng)
  res = config.data.resolution
  variables = net.init(k_net, jnp.zeros((1, res, res, 3), jnp.float32))
  params = {"net": variables["params"],
            "centres": jax.random.normal(k_c, (config.model.embed, config.idnet.num_train_identities)) * 0.01}
  return {"params": params, "batch_stats": variables["batch_stats"], "opt": optimizer(config).init(params),
          "step": jnp.zeros((), jnp.int32)}


def phase(config, step):
  return None


def train_step(config):
  net, tx, c = network(config, train=True), optimizer(config), config.idnet

  def step(state, batch, rng, phase):
    images = render(config, batch, rng)

    def loss_fn(params):
      emb, updates = net.apply({"params": params["net"], "batch_stats": state["batch_stats"]}, images,
                               mutable=["batch_stats"])
      loss, acc = id_losses.arcface_loss(emb, params["centres"], batch["label"], c.scale, c.margin)
      return loss, (acc, updates["batch_stats"])

    (loss, (acc, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt = tx.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new_state = {"params": params, "batch_stats": stats, "opt": opt, "step": state["step"] + 1}
    return new_state, {"loss": loss, "train_acc": acc, "grad_norm": optax.global_norm(grads)}

  return step
