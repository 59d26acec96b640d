"""The frozen-expert bootstrap registry: every expert a method bootstraps is in it, and a spec for the wrong
trainer or an unknown expert is a clear ConfigError before anything trains."""

import ml_collections
import pytest

from jaxface.errors import ConfigError
from jaxface.runs import disco_expert_configs
from jaxface.train import experts


def test_every_bootstrapped_expert_is_registered_with_a_loader():
  assert set(disco_expert_configs.NAMES) | {"attributes"} <= set(experts.REGISTRY)
  for name, expert in experts.REGISTRY.items():
    assert callable(expert.load) and expert.trainer, name
  assert experts.REGISTRY["attributes"].spec == "configs/attributes.py"


def test_a_spec_for_another_trainer_or_an_unknown_expert_is_refused(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path))
  parser_cfg = ml_collections.ConfigDict(dict(trainer="parser", total_steps=2))
  with pytest.raises(ConfigError, match="trainer 'parser'.*configs/rnet.py"):
    experts.trained_bootstrap(parser_cfg, "rnet", "configs/parser.py:small")
  with pytest.raises(ConfigError, match="no expert is called 'nose'"):
    experts.trained_bootstrap(parser_cfg, "nose", "configs/parser.py:small")
  assert not list(tmp_path.iterdir())  # nothing was trained or locked
