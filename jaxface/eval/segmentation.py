"""Segmentation metrics: confusion matrix, per-class IoU and mIoU; and the parser's held-out evaluation.

  python -m jaxface.eval.segmentation --workdir WORKDIR [--num 512] [--start 1000000000]

IoU_c = TP_c / (TP_c + FP_c + FN_c), accumulated over the whole held-out set (not averaged per image), and
mIoU = the mean over classes that occur in the truth or the prediction (a class absent from both has no IoU).
The target: mIoU >= 0.85 on held-out synthetic images (world indices from `start`, never drawn in
training, which uses indices below data.size).
"""


import numpy as np

from jaxface.cli import progress
from jaxface.data import synthetic
from jaxface.errors import UserError, cli
from jaxface.eval import heldout

THRESHOLD = 0.85
HELDOUT_START = 10 ** 9


def confusion_matrix(pred, true, num_classes):
  """[num_classes, num_classes] counts, rows = truth, columns = prediction. pred, true: int arrays, same shape."""
  pred, true = np.asarray(pred).reshape(-1), np.asarray(true).reshape(-1)
  if pred.shape != true.shape:
    raise ValueError(f"prediction and truth differ in size: {pred.shape} vs {true.shape}")
  if pred.size and (min(pred.min(), true.min()) < 0 or max(pred.max(), true.max()) >= num_classes):
    raise ValueError(f"labels must be in [0, {num_classes})")
  idx = true.astype(np.int64) * num_classes + pred.astype(np.int64)
  return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(conf):
  """Per-class IoU [C] from a confusion matrix; nan for classes absent from both truth and prediction."""
  conf = np.asarray(conf, np.float64)
  tp = np.diag(conf)
  union = conf.sum(0) + conf.sum(1) - tp
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(union > 0, tp / union, np.nan)


def mean_iou(conf):
  return float(np.nanmean(iou_per_class(conf)))


def evaluate(model, data_cfg, num=512, start=HELDOUT_START, batch_size=64, class_names=None):
  """Runs a loaded parser (`train.parser.ParserModel`) on `num` held-out renders; returns mIoU and per-class IoU."""
  import jax
  from jaxface.data import synthetic, synthetic_factors as sf  # JAX: loaded once the command runs, not for --help
  if num < 1:
    raise UserError(f"the number of held-out samples must be >= 1, got {num}")
  res, n_cls = int(data_cfg.resolution), model.num_classes
  cfg = sf.as_world_config(data_cfg)
  render = jax.jit(lambda f: synthetic.render_batch(f, res, data_cfg))
  conf = np.zeros((n_cls, n_cls), np.int64)
  for s in progress(range(0, num, batch_size), "parsing held-out faces"):
    n = min(batch_size, num - s)
    fs = sf.stack([sf.sample_factors(start + s + i, cfg) for i in range(batch_size)])
    out = render({k: fs[k] for k in synthetic.RENDER_KEYS})
    labels = np.asarray(model.labels(out["image"]))[:n]
    conf += confusion_matrix(labels, np.asarray(out["seg"])[:n], n_cls)
  iou = iou_per_class(conf)
  names = class_names or [str(i) for i in range(n_cls)]
  miou = float(np.nanmean(iou))
  pixel_acc = float(np.diag(conf).sum() / conf.sum())
  return {"num_samples": int(num), "resolution": res, "heldout_start": int(start), "miou": miou,
          "pixel_accuracy": pixel_acc, "iou": {nm: (None if np.isnan(v) else round(float(v), 4)) for nm, v in
                                               zip(names, iou)},
          "pass": {"miou": bool(miou >= THRESHOLD)}}




def run(config, state, workdir):
  from jaxface.runs.parser import ParserModel  # JAX: `--help` answers without loading it
  del workdir
  model = ParserModel(config, {"params": state["params"], "batch_stats": state["batch_stats"]},
                      int(state["step"]))
  return evaluate(model, config.data, config.eval.num_samples, config.eval.start, config.eval.batch_size,
                  class_names=list(synthetic.CLASSES))


@cli
def main(argv=None):

  def load(workdir, step):
    from jaxface.runs.parser import load_parser  # JAX: after the arguments parse
    return load_parser(workdir, step)

  def measure(model, num, start):
    return evaluate(model, model.config.data, num, start, class_names=list(synthetic.CLASSES))

  heldout.main(argv, module="jaxface.eval.segmentation", description=__doc__.splitlines()[0],
               workdir_help="a parser training workdir (configs/parser.py)", default_num=512,
               default_start=HELDOUT_START, load=load, evaluate=measure)


if __name__ == "__main__":
  main()
