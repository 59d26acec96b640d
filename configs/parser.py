r"""Face parser (segmentation network) trained on the synthetic face world's per-pixel labels.

Presets (the string after the colon):
  small     64x64, ResNet-18-layout encoder at quarter width (16-32-64-128 channels) + FPN decoder (48 ch)
            with full-resolution refinement, batch 32, for CPU. Images are rendered inside each step.
              python -m jaxface.main --config configs/parser.py:small --workdir workdirs/parser_small
            Hardware: 2 CPU cores (~2-3 s/step, rendering included). Result in docs/results_experts.md.
  faithful  256x256, full-width ResNet-18 encoder + 256-channel FPN (Lin et al.'s parser backbone, as
            DiscoFaceGAN uses), batch 32, bfloat16. GPU/TPU:
              python -m jaxface.main --config configs/parser.py:faithful --workdir gs://BUCKET/parser256
Expected: mIoU >= 0.85 over synthetic.CLASSES on held-out samples (WORKDIR/eval/
step_N.json, or `python -m jaxface.eval.segmentation --workdir WORKDIR`).
Other arguments: res=R (multiple of 32), e.g. configs/parser.py:small,res=128.
"""

import ml_collections

from configs import common


def get_config(arg=""):
  args = common.parse_arg(arg, preset="small", res=0)
  if args.preset not in ("small", "faithful"):
    from jaxface.errors import ConfigError
    raise ConfigError(f"unknown preset {args.preset!r} for configs/parser.py; use small or faithful.")
  small = args.preset == "small"
  res = args.res or (64 if small else 256)

  config = ml_collections.ConfigDict()
  config.trainer = "parser"  # jaxface/train/<trainer>.py
  config.config_file = ""  # filled in by jaxface.config with the file:arg this config came from
  config.batch_size = 32  # global batch, split over all devices and hosts
  config.total_steps = 1000 if small else 100_000  # optimizer steps
  common.mesh_and_sharding(config)
  config.compute_dtype = "float32" if small else "bfloat16"
  common.run_blocks(config)
  config.ckpt.every_steps = 250 if small else 5000
  config.log.every_steps = 25 if small else 200
  config.log.samples_every_steps = 10 ** 9  # the parser makes no generated images; no sample grids

  config.data = common.data_block(res)  # the synthetic world (kind=synthetic) is required: it has the labels

  config.model = ml_collections.ConfigDict(dict(
      depth=18,  # encoder ResNet depth
      encoder_width=16 if small else 64,  # encoder first-stage channels (64 = torchvision ResNet-18)
      width=48 if small else 256,  # FPN / decoder channels
  ))

  config.optim = ml_collections.ConfigDict(dict(
      lr=2e-3 if small else 1e-3,  # AdamW peak learning rate
      warmup_steps=100 if small else 1000,  # linear warm-up steps
      final_lr_fraction=0.02,  # cosine decay ends at lr * this
      weight_decay=1e-4,  # decoupled weight decay
      grad_clip=10.0,  # global-norm gradient clipping
  ))

  config.loss = ml_collections.ConfigDict(dict(
      w_ce=1.0,  # pixel cross-entropy
      w_dice=1.0,  # soft Dice over the classes present (equal say for small classes, as mIoU gives them)
  ))

  config.eval = ml_collections.ConfigDict(dict(
      num_samples=512,  # held-out samples scored at the end of training
      start=10 ** 9,  # first held-out world index (training draws indices below data.size)
      batch_size=64,  # images per evaluation call
  ))
  return config
