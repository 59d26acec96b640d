import pytest

from configs import common
from jaxface import config as config_lib
from jaxface.errors import ConfigError


def test_parse_arg_forms():
  spec = dict(preset="tiny", res=0, fast=False)
  assert common.parse_arg("", **spec).to_dict() == spec
  assert common.parse_arg("paper256", **spec).preset == "paper256"
  a = common.parse_arg("res=64,fast", **spec)
  assert (a.res, a.fast, a.preset) == (64, True, "tiny")
  assert common.parse_arg("fast=false", **spec).fast is False
  with pytest.raises(ConfigError, match="valid arguments: preset, res, fast"):
    common.parse_arg("rez=64", **spec)
  with pytest.raises(ConfigError, match="integer"):
    common.parse_arg("res=big", **spec)


def test_build_and_typed_overrides():
  config = config_lib.build("configs/stylegan2.py:tiny", [("batch_size", "16"), ("loss.r1_gamma", "0.5"),
                                                          ("mesh", "[('data', 4), ('fsdp', 2)]"),
                                                          ("wandb.mode", "disabled"), ("ckpt.async_save", "false")])
  assert config.batch_size == 16 and config.loss.r1_gamma == 0.5 and config.ckpt.async_save is False
  assert [tuple(x) for x in config.mesh] == [("data", 4), ("fsdp", 2)]
  assert config.config_file == "configs/stylegan2.py:tiny"


@pytest.mark.parametrize("key,raw,message", [
    ("batch_sise", "8", "config has no field 'batch_sise'. Valid fields: .*batch_size"),
    ("loss.r1_gama", "1", "config.loss has no field 'r1_gama'. Valid fields: .*r1_gamma"),
    ("batch_size", "eight", "expected an integer"),
    ("loss", "1", "is a group"),
    ("batch_size.x", "1", "is a value, not a group"),
])
def test_override_errors_name_the_valid_keys(key, raw, message):
  config = config_lib.build("configs/stylegan2.py:tiny")
  with pytest.raises(ConfigError, match=message):
    config_lib.override(config, key, raw)


def test_config_is_locked_against_new_fields():
  config = config_lib.build("configs/stylegan2.py:tiny")
  with pytest.raises(AttributeError):
    config.not_a_field = 1


def test_parse_overrides():
  assert config_lib.parse_overrides(["--config.a=1", "--config.b", "2"]) == [("a", "1"), ("b", "2")]
  with pytest.raises(ConfigError, match="unrecognised argument"):
    config_lib.parse_overrides(["--confg.a=1"])


def test_every_config_field_is_documented():
  """Each field line of a config file carries a one-line comment (the house rule)."""
  import glob
  import re
  undocumented = [f"{path}: {line.strip()}" for path in sorted(glob.glob("configs/*.py"))
                  for line in open(path) if re.match(r"\s+\w+=.*,\s*$", line) and "dict(" not in line]
  assert not undocumented, "undocumented config fields:\n" + "\n".join(undocumented)
