"""Evaluators are named in the config (config.evals); a config without the field gets its trainer's EVALS."""

import ml_collections
import pytest

from jaxface.errors import ConfigError
from jaxface.train import evaluators


def _config(trainer, **fields):
  return ml_collections.ConfigDict(dict(trainer=trainer, **fields))


def test_the_config_names_the_evaluators():
  assert evaluators.evaluators(_config("rnet", evals=("segmentation", "recon"))) == ("segmentation", "recon")
  assert evaluators.evaluators(_config("stylegan2", evals=())) == ()


def test_a_config_without_evals_gets_its_trainers_defaults():
  # An old workdir's config.json, or an expert config (whose hash names its cache directory).
  assert evaluators.evaluators(_config("rnet")) == ("recon",)
  assert evaluators.evaluators(_config("disco")) == ("disco",)
  assert evaluators.evaluators(_config("stylegan2")) == ()


def test_every_default_evaluator_exists_and_no_trainer_imports_one():
  import importlib
  import os
  root = os.path.join(os.path.dirname(evaluators.__file__))
  trainers = [n[:-3] for n in os.listdir(root) if n.endswith(".py") and n not in (
      "__init__.py", "loop.py", "evaluators.py", "experts.py")]
  for trainer in trainers:
    for name in evaluators.evaluators(_config(trainer)):
      assert callable(evaluators.evaluator(name)), (trainer, name)
    with open(os.path.join(root, trainer + ".py")) as f:
      assert "jaxface.eval" not in f.read(), trainer
  assert importlib.import_module("jaxface.train.rnet").EVALS == ("recon",)


def test_an_unknown_evaluator_is_a_config_error():
  with pytest.raises(ConfigError, match="'nope'.*no module of jaxface/eval/"):
    evaluators.evaluator("nope")
  with pytest.raises(ConfigError, match="no run"):
    evaluators.evaluator("fid")  # a helper module, not an evaluator
