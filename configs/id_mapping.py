r"""Identity disentanglement by mapping into a pretrained StyleGAN's W space (Nitzan et al. 2020).

Only the attribute encoder, the mapper and a W discriminator train; the generator, the identity network and the
landmark network stay frozen (jaxface/train/id_mapping.py). The generator, named with
gen=PATH or --config.generator.workdir, is a trained jaxface StyleGAN2 workdir (configs/stylegan2.py) or a
DiscoFaceGAN one (configs/disco.py, a training workdir or an exported folder such as the bundled
pretrained/disco_cpu64); the mapper maps into its W.

Presets (the string after the colon):
  synthetic  (default) CPU, a StyleGAN2 trained on the synthetic world (configs/stylegan2.py:world64, 64x64, w 64):
             identity = the synthetic identity net, landmarks = the synthetic R-Net's 68 points (jaw dropped, as the
             original drops it), a small conv attribute encoder, the original's losses, weights and schedule, with
             a higher learning rate for a short CPU budget.
               python -m jaxface.main --config configs/id_mapping.py:gen=workdirs/sg2_world64 \
                   --workdir workdirs/idmap --config.experts.idnet=IDNET_RUN --config.experts.rnet=RNET_RUN
             Empty expert workdirs are trained into $JAXFACE_CACHE first (the DiscoFaceGAN default bootstraps).
             Measured run, hardware and metrics: docs/results_id_mapping.md.
  faithful   The paper's setting at 256x256 on a user's StyleGAN2 (w 512): ArcFace identity (user weights,
             insightface .onnx/.pth), MediaPipe 468-point landmarks (registry asset), InceptionV3 attribute encoder
             (initialised from the FID Inception asset), mapper 2560->2048->1024->512->512, 70,000 generated images,
             batch 6, Adam lr 5e-5 / 5e-6 / 2e-5. A GPU job.
  tiny       Test sizes.
"""

import ml_collections

from configs import common
from jaxface.errors import ConfigError

PRESETS = ("synthetic", "faithful", "tiny")


def get_config(arg=""):
  args = common.parse_arg(arg, preset="synthetic", gen="")
  if args.preset not in PRESETS:
    raise ConfigError(f"unknown preset {args.preset!r} for configs/id_mapping.py; use one of {', '.join(PRESETS)}.")
  faithful, tiny = args.preset == "faithful", args.preset == "tiny"

  config = ml_collections.ConfigDict()
  config.trainer = "id_mapping"  # jaxface/train/<trainer>.py
  config.evals = ("id_mapping",)  # evaluators run when training ends: jaxface/eval/<name>.py `run`
  config.config_file = ""  # filled in by jaxface.config with the file:arg this config came from
  config.batch_size = 6 if faithful else 4 if tiny else 8  # global batch (original default 6)
  config.total_steps = 200_000 if faithful else 4 if tiny else 3000  # optimizer steps (the original runs until stopped)
  common.mesh_and_sharding(config)
  common.run_blocks(config)
  config.ckpt.every_steps = 2 if tiny else 250 if not faithful else 2000
  config.log.every_steps = 1 if tiny else 50
  config.log.samples_every_steps = 2 if tiny else 1000
  config.log.num_samples = 4 if tiny else 8  # swap grid: this many identities x this many attribute images

  config.generator = ml_collections.ConfigDict(dict(
      workdir=args.gen,  # a trained configs/stylegan2.py or configs/disco.py workdir, or an export (frozen); required
      step=-1,  # its checkpoint step; -1 = the newest (filled in at start)
      fingerprint="",  # filled in at start: the generator's parameter fingerprint (jaxface.swap checks it)
  ))

  # Not a `data` block: the training set is sampled from the frozen generator (which saw the synthetic world by
  # default), not read from a data source.
  config.samples = ml_collections.ConfigDict(dict(
      path="",  # folder of generated (image, w) pairs; empty = generated into $JAXFACE_CACHE on first use
      num_images=70_000 if faithful else 64 if tiny else 10_000,  # generated training images (paper: 70K)
      num_val=1000 if faithful else 16 if tiny else 500,  # further generated images held out for evaluation
      # truncation of the generated data; -1 = the generator kind's default: a StyleGAN2 0.7 on the first 8 layers
      # (the original's generate_fake_data), a DiscoFaceGAN 1.0 (none: truncating w would shrink the pose range λ sets)
      truncation_psi=-1.0,  # ψ of that truncation (see above); 1.0 = none
      truncation_layers=-1,  # truncated style layers from the first; -1 = the kind's default (above)
      seed=0,  # z seed of the generated images
  ))

  config.experts = ml_collections.ConfigDict(dict(
      identity="arcface" if faithful else "synthetic",  # synthetic | dlib | arcface: the frozen identity encoder
      idnet="",  # synthetic: configs/idnet.py workdir (empty: bootstrap); arcface: .onnx/.pth weights
      landmarks="mediapipe" if faithful else "rnet",  # rnet (synthetic R-Net's 68 points) | mediapipe (468 points)
      rnet="",  # configs/rnet.py workdir: landmarks (landmarks=rnet) and the pose metrics (empty: bootstrap)
      bootstrap_preset="tiny" if tiny else "default",  # which configs/disco.py bootstrap table trains empty experts
  ))

  config.model = ml_collections.ConfigDict(dict(
      attr_encoder="inception" if faithful else "conv",  # conv (small, from scratch) | inception (2048-d)
      attr_dim=2048 if faithful else 32 if tiny else 256,  # attribute code size (inception: 2048)
      attr_widths=(8, 16) if tiny else (32, 64, 128, 256),  # conv encoder stage widths (each halves the size)
      mapper_hidden=(2048, 1024, 512) if faithful else (32, 32, 32) if tiny else (512, 256, 128),  # mapper MLP
      disc_hidden=(256, 128, 64) if not tiny else (16, 8),  # W discriminator MLP (original 256-128-64)
      # w: the mapper outputs w (the original). z: it outputs the generator's input (a DiscoFaceGAN's standardised
      # λ ‖ ε, a StyleGAN2's z) and the frozen mapping network makes w of it, so every output is a w the generator
      # was trained to draw (a w-output mapper into a DiscoFaceGAN's 256-d W drifted off it and drew blurs)
      target="w",  # w | z (see above)
  ))

  lr = 5e-5 if faithful else 2e-4
  config.optim = ml_collections.ConfigDict(dict(
      lr=lr,  # Adam #1: non-adversarial loss -> attribute encoder + mapper (original 5e-5 at 256, 1e-5 at 1024)
      adv_lr_mul=0.1,  # Adam #2: adversarial generator loss, lr x this (original 0.1)
      d_lr_mul=0.4,  # Adam #3: W discriminator, lr x this (original 0.4)
      beta1=0.9,  # Keras Adam defaults, as the original
      beta2=0.999,  # second-moment decay
      eps=1e-7,  # Keras epsilon
  ))

  config.loss = ml_collections.ConfigDict(dict(
      w_id=1.0,  # identity embedding L1 (original 1)
      w_landmarks=0.001,  # landmark MSE in 160-px units (original 0.001)
      w_pixel=0.02,  # pixel term on reconstruction steps (original 0.02)
      ssim_mix=0.84,  # (1 - MS-SSIM) share of the pixel term; the rest is the inverse-Gaussian-masked L1
      mask_sigma=0,  # pixel mask Gaussian sigma in pixels; 0 = the original's int(80 R / 256)
      w_gan=1.0,  # adversarial weight on W (original 1; 0 disables D_W and the adversarial steps)
      r1_gamma=10.0,  # R1 on real w, every discriminator step (original 10)
  ))

  config.schedule = ml_collections.ConfigDict(dict(
      cross_every=3,  # a cross-identity step (I_id != I_attr, no pixel loss) when step % N == 0; 0 = never
      adv_every=2,  # adversarial G and D updates when step % N == 0 (original 2)
      unified=False,  # adversarial every step with w_gan halved (the original's --unified)
  ))

  config.eval = ml_collections.ConfigDict(dict(
      num_pairs=32 if tiny else 500,  # held-out cross pairs / reconstructions measured
      world_pairs=16 if tiny else 256,  # synthetic-world renders as inputs (truth yaw) when the generator saw the world
      batch_size=8 if tiny else 50,  # images per evaluation call
  ))
  return config
