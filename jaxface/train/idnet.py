"""An identity network trained on the synthetic world's identities with ArcFace's additive angular margin loss.

The third identity-network option (besides the dlib descriptor and users' ArcFace weights): a ResNet
(jaxface/models/resnet.py, torchvision layout, BatchNorm in training mode) on the rendered image, a linear
embedding, and one unit-norm class centre per training identity (jaxface/losses/identity.py). Every step draws
`batch_size` (identity, sample) pairs on the host - identity k from the first `num_train_identities` of the pool,
any sample index for expression, pose, light, background - and renders them on device inside the step. The
identities after `eval.first_identity` are never trained on; `evaluate` measures verification ROC-AUC on them
(jaxface/eval/identity.py).

`load_idnet(workdir)` gives DiscoFaceGAN the frozen net as a pure function images [B, R, R, 3] in [-1, 1] -> unit
embeddings [B, E].
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxface.errors import CheckpointError, ConfigError, UserError
from jaxface.losses import identity as id_losses
from jaxface.models import resnet

class SyntheticIdNet(nn.Module):
  """[B, R, R, 3] in [-1, 1] -> [B, embed] (not normalized): ResNet features, then a linear embedding."""
  depth: int = 18
  embed: int = 128
  train: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = resnet.ResNet(self.depth, self.train, self.dtype, name="backbone")(x)
    return nn.Dense(self.embed, dtype=jnp.float32, param_dtype=jnp.float32, name="embed")(h)


def network(config, train=False):
  m = config.model
  if m.depth not in resnet.STAGES:
    raise ConfigError(f"config.model.depth={m.depth}; choose one of {sorted(resnet.STAGES)}.")
  return SyntheticIdNet(m.depth, m.embed, train, jnp.dtype(config.compute_dtype))


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

def identity_sample(identity, index, world):
  """Factors of sample `index` (expression, pose, light, background...) worn by identity `identity`."""
  from jaxface.data import synthetic_factors as sf
  f = sf.sample_factors(index, world)
  f.update(sf.identity_factors(identity, world))
  return f


class IdentityBatches:
  """Global batches of factors with labels; deterministic in (seed, step), so the state is the step counter."""

  def __init__(self, config, process_index=0, process_count=1):
    from jaxface.data import synthetic
    from jaxface.data import synthetic_factors as sf
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


def render(config, factors):
  """Batched factors -> images [B, R, R, 3] in [-1, 1] (float32), on device."""
  from jaxface.data import synthetic
  return synthetic.render_batch(factors, config.data.resolution, config.data)["image"] * 2.0 - 1.0


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
    images = render(config, batch)

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


def embed_fn(config, params, batch_stats):
  """Pure function images [B, R, R, 3] in [-1, 1] -> unit embeddings [B, E] (frozen, eval-mode BatchNorm)."""
  net = network(config, train=False)
  variables = {"params": params, "batch_stats": batch_stats}
  return lambda images: id_losses.l2_normalize(net.apply(variables, images))


def evaluate(config, state, workdir):
  """Verification ROC-AUC on identities never trained on (jaxface/eval/identity.py)."""
  from jaxface.eval import identity as eval_id
  state = jax.device_get(state)
  fn = embed_fn(config, state["params"]["net"], state["batch_stats"])
  pairs = eval_id.make_pairs(config.eval.num_pairs, config.eval.first_identity, config.data.num_identities,
                             config.data, seed=config.eval.seed)
  return {"synthetic_idnet": eval_id.verify(eval_id.synthetic_embedder(fn), pairs, config.data,
                                            config.data.resolution)}


def load_idnet(workdir, step=None):
  """Frozen identity net of a `configs/idnet.py` training: {"embed": fn images -> unit [B, E], "resolution": R,
  "step": step}. Images are [B, R, R, 3] in [-1, 1], framed like the synthetic world's renders."""
  from jaxface.train.priors import restore_workdir
  config, state, step = restore_workdir(workdir, step)
  if config.get("trainer") != "idnet":
    raise CheckpointError(f"{workdir} was trained by {config.get('trainer')!r}, not the idnet method; pass the "
                          f"workdir of a configs/idnet.py run.")
  return {"embed": embed_fn(config, state["params"]["net"], state["batch_stats"]),
          "resolution": int(config.data.resolution), "step": step}
