r"""SofGAN texture branch: SIW-StyleGAN2 (semantic instance-wise, two styles per image) on the synthetic world.

Images and label maps are drawn unpaired from the synthetic face world (the world's 16 classes mapped to
SofGAN's 17), as the release does with FFHQ/CelebA and parser-made label maps.

Presets (the string after the colon):
  small     64x64, label maps one-hot at 64, channels <= 64 (32 at 64x64), SPADE at 16/32/64, batch 8, float32,
            for CPU.
              python -m jaxface.main --config configs/siw.py:small --workdir workdirs/siw_small \
                  --config.eval.parser=workdirs/parser_small
            Measured (2 CPU cores shared with other jobs): 800 steps = 6.4 kimg at 2.9 img/s, 44 min wall including
            compilation and the final evaluation. Blurry faces that follow the label maps; segmentation
            consistency mIoU 0.45 (the parser on real renders of the same maps: 0.74), region-edit locality
            (mean |delta| inside / outside) hair 27x, complexion 31x, background 7.7x, FID 176 (500 samples).
            WORKDIR/eval/step_800.json, WORKDIR/samples/region_edit.png; docs/siw_region_edit.png.
  faithful  The release's recipe at 256x256 (the code default; --config.model.resolution=1024
            --config.data.resolution=1024 for the paper's size): StyleGAN2 widths (channel_base 32768, max 512),
            label maps one-hot at 128, SPADE at 64/128/256, const noise, batch 4 (4 GPUs x 1 released),
            R1 gamma 10 every 16, path length 2 every 4, Adam 0.002 with the lazy-reg correction (0.0016 / 0.00188),
            EMA 0.5^(32/10000) per 4-image step (half-life 1.25 kimg), bfloat16. GPU:
              python -m jaxface.main --config configs/siw.py:faithful --workdir gs://BUCKET/siw256 \
                  --config.data.kind=arrayrecord --config.data.path=/data/ffhq256   # or the synthetic world
  tiny      16x16, a few steps: for tests.
A parser workdir (configs/parser.py) scores segmentation consistency; empty: the DiscoFaceGAN parser bootstrap
(jaxface.train.experts) is trained into $JAXFACE_CACHE on first use.
"""

import ml_collections

from configs import common

PRESETS = ("small", "faithful", "tiny")
# The parser DiscoFaceGAN bootstraps by default (configs/disco.py BOOTSTRAPS["default"]): the same spec and
# overrides land in the same $JAXFACE_CACHE/experts/parser-<hash> directory, so the two methods share it.
PARSER_BOOTSTRAP = {"total_steps": 100, "batch_size": 16, "optim/warmup_steps": 10, "eval/num_samples": 64,
                    "log/every_steps": 25, "ckpt/every_steps": 100}
# configs/disco.py BOOTSTRAPS["tiny"]["parser"]: a 2-step parser, enough to exercise the evaluation in tests.
PARSER_BOOTSTRAP_TINY = ("configs/parser.py:small,res=32", {
    "total_steps": 2, "batch_size": 8, "model/encoder_width": 8, "model/width": 8, "eval/num_samples": 8,
    "eval/batch_size": 8, "ckpt/every_steps": 2})


def get_config(arg=""):
  args = common.parse_arg(arg, preset="small")
  if args.preset not in PRESETS:
    from jaxface.errors import ConfigError
    raise ConfigError(f"unknown preset {args.preset!r} for configs/siw.py; use one of {', '.join(PRESETS)}.")
  p = args.preset
  res = {"small": 64, "faithful": 256, "tiny": 16}[p]
  gpu = p == "faithful"

  config = ml_collections.ConfigDict()
  config.trainer = "siw"  # jaxface/train/<trainer>.py
  config.evals = ("siw",)  # evaluators run when training ends: jaxface/eval/<name>.py `run`
  config.config_file = ""  # filled in by jaxface.config with the file:arg this config came from
  config.batch_size = {"small": 8, "faithful": 4, "tiny": 4}[p]  # global batch (released: 4 GPUs x 1)
  config.total_steps = {"small": 800, "faithful": 250_000, "tiny": 4}[p]  # steps (released: ~1000 kimg to converge)
  common.mesh_and_sharding(config)
  config.compute_dtype = "bfloat16" if gpu else "float32"
  common.run_blocks(config)
  config.ckpt.every_steps = {"small": 250, "faithful": 5000, "tiny": 2}[p]
  config.log.every_steps = {"small": 25, "faithful": 200, "tiny": 1}[p]
  config.log.samples_every_steps = {"small": 250, "faithful": 5000, "tiny": 2}[p]
  config.log.num_samples = 4 if p == "tiny" else 16

  config.data = common.data_block(res)  # images; label maps always come from the synthetic world (unpaired)

  config.model = ml_collections.ConfigDict(dict(
      resolution=res,  # output resolution (power of two)
      z_dim={"small": 64, "faithful": 512, "tiny": 8}[p],  # latent size (512 released)
      w_dim={"small": 64, "faithful": 512, "tiny": 8}[p],  # intermediate latent size
      mapping_layers={"small": 4, "faithful": 8, "tiny": 2}[p],  # mapping depth (8 released)
      mapping_lr_mul=0.01,  # learning-rate multiplier of the mapping network
      channel_base={"small": 2048, "faithful": 32768, "tiny": 64}[p],  # G channels at r = min(base // r, max)
      d_channel_base={"small": 2048, "faithful": 32768, "tiny": 64}[p],  # the same for D
      channel_max={"small": 64, "faithful": 512, "tiny": 8}[p],  # widest layer
      mbstd_group_size=4,  # minibatch-stddev group (the release's per-GPU batch 1 makes it degenerate)
      seg_res={"small": 64, "faithful": 128, "tiny": 32}[p],  # label maps are one-hot encoded at this size
      enc_widths=(32, 64, 128) if p != "tiny" else (4, 4, 8),  # segmentation encoder widths (17->32->64->128)
      spade_resolutions={"small": (16, 32, 64), "faithful": (64, 128, 256), "tiny": (16,)}[p],  # SPADE layers
      spade_hidden={"small": 32, "faithful": 128, "tiny": 4}[p],  # SPADE shared conv width (128 released)
      noise_mode="const",  # const (fixed per-layer maps, as released) | random | none
      style_impl="grouped",  # two-style conv: grouped (styles folded into the batch) | vmap
  ))

  # Adam before the lazy-regularization correction: with the intervals below this is the release's
  # G 0.002 * 4/5 = 0.0016, D 0.002 * 16/17, betas (0, 0.99 ** ratio).
  config.optim_G = ml_collections.ConfigDict(dict(lr=0.002, beta1=0.0, beta2=0.99, eps=1e-8))  # Adam for G
  config.optim_D = ml_collections.ConfigDict(dict(lr=0.002, beta1=0.0, beta2=0.99, eps=1e-8))  # Adam for D

  config.loss = ml_collections.ConfigDict(dict(
      r1_gamma={"small": 0.2, "faithful": 10.0, "tiny": 0.1}[p],  # R1 weight (10 released at 1024)
      r1_interval=16 if p != "tiny" else 1,  # lazy R1 every N steps (16 released; tiny: 1 compiled step variant)
      pl_weight=2.0,  # path-length weight (2 released); 0 disables
      pl_interval=4 if p != "tiny" else 1,  # lazy path length every N steps (4 released)
      pl_decay=0.01,  # EMA rate of the path-length target
      pl_batch_shrink=2,  # path-length batch = batch_size // this
      distinct_prob=0.9,  # probability that an image's two z differ (mixing 0.9 released)
      ema_kimg={"small": 1.0, "faithful": 1.25, "tiny": 0.01}[p],  # G_ema half-life in kimg (released: 1.25)
      ema_rampup=0.05 if p == "small" else 0.0,  # half-life ramp-up as a fraction of images seen (0 = off)
      w_avg_beta=0.995,  # running mean of W for truncation
  ))

  config.aug = ml_collections.ConfigDict(dict(
      flip=True,  # independent horizontal flips of images and label maps (nose l/r swapped), p = 0.5
  ))

  config.eval = ml_collections.ConfigDict(dict(
      parser="",  # configs/parser.py workdir for segmentation consistency (empty: the disco parser bootstrap)
      parser_bootstrap="configs/parser.py:small" if p != "tiny" else PARSER_BOOTSTRAP_TINY[0],  # empty parser: this
      parser_bootstrap_overrides=PARSER_BOOTSTRAP if p != "tiny" else PARSER_BOOTSTRAP_TINY[1],  # its overrides
      num_samples={"small": 256, "faithful": 2048, "tiny": 4}[p],  # label maps for mIoU and locality
      fid_samples={"small": 500, "faithful": 10_000, "tiny": 0}[p],  # FID fakes and reals (0 = skip)
      batch_size={"small": 32, "faithful": 64, "tiny": 4}[p],  # images per evaluation call
      start=10 ** 9,  # first held-out world index (training draws indices below data.size)
  ))
  if p == "tiny":
    config.data.num_identities = 200
    config.wandb.mode = "disabled"
  return config
