"""Weight-file readers and converters: one small module per format, each returning plain numpy.

Readers never execute code from the files they read: no plain `pickle.load`, no `torch.load`,
no archive extraction outside the asset cache.
"""


def flatten(tree, prefix=""):
  """{'a': {'b': x}} -> {'a/b': x}: how nested Flax params are stored in a flat `.npz`."""
  out = {}
  for k, v in tree.items():
    name = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flatten(v, name + "/"))
    else:
      out[name] = v
  return out


def unflatten(flat):
  """{'a/b': x} -> {'a': {'b': x}}; keys starting with '__' (metadata) are dropped."""
  tree = {}
  for k, v in flat.items():
    if k.startswith("__"):
      continue
    *path, leaf = k.split("/")
    node = tree
    for p in path:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree
