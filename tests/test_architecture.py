"""The architecture as docs/ARCHITECTURE.md draws it: the layer contracts in pyproject.toml hold, the import
graph of jaxface has no cycle, every package and top-level module is on the map, and no file outgrows 400 lines."""

import os
import re
import sys

import grimp
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PACKAGE = os.path.join(ROOT, "jaxface")
MAX_LINES = 400


@pytest.fixture(scope="module")
def graph():
  sys.path.insert(0, ROOT)  # the checkout under test, whatever is installed
  return grimp.build_graph("jaxface", cache_dir=None)


def cycles(edges):
  """The strongly connected components with more than one module (each holds an import cycle), sorted."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):  # Tarjan's algorithm
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in edges.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges) + 100))
  for v in sorted(edges):
    if v not in index:
      visit(v)
  return sorted(found)


def test_the_cycle_finder_finds_cycles():
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set(), "c": {"b"}}) == []


def test_no_import_cycles(graph):
  # Every import counts, at module level or inside a function: a cycle hidden in a function is still a cycle.
  edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
  assert cycles(edges) == []


def test_layer_contracts_hold(graph):
  from importlinter import cli as importlinter_cli
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    status = importlinter_cli.lint_imports(config_filename=os.path.join(ROOT, "pyproject.toml"), no_cache=True)
  finally:
    os.chdir(cwd)
  assert status == 0, "an import breaks a layer contract in pyproject.toml; the report above names it"


def _modules():
  """(name as the map writes it, path) of every package and top-level module of jaxface/."""
  out = []
  for name in sorted(os.listdir(PACKAGE)):
    path = os.path.join(PACKAGE, name)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "__init__.py")):
      out.append((name + "/", path))
    elif name.endswith(".py"):
      out.append((name, path))
  return out


def test_the_map_names_every_package_and_module():
  with open(os.path.join(ROOT, "docs", "ARCHITECTURE.md")) as f:
    text = f.read()
  missing = [name for name, _ in _modules() if not re.search(rf"(?<![\w/.]){re.escape(name)}", text)]
  assert len(_modules()) > 20 and not missing, f"docs/ARCHITECTURE.md does not name {missing}"


def test_no_file_over_400_lines():
  long = {}
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith((".py", ".js", ".html")):
        path = os.path.join(folder, name)
        with open(path) as f:
          n = sum(1 for _ in f)
        if n > MAX_LINES:
          long[os.path.relpath(path, ROOT)] = n
  assert not long, f"split by concern: {long}"


def test_function_local_imports_say_why():
  # A jaxface import inside a function is a cycle dodge unless a heavy or optional dependency is the reason, which
  # its line (or the comment line above it) says.
  import ast
  bare = []
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(folder, name)
      with open(path) as f:
        source = f.read()
      lines = source.splitlines()
      for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          continue
        for stmt in ast.walk(node):
          local = (isinstance(stmt, ast.ImportFrom) and (stmt.module or "").startswith("jaxface")) or (
              isinstance(stmt, ast.Import) and any(a.name.startswith("jaxface") for a in stmt.names))
          if local and "#" not in lines[stmt.lineno - 1] and not lines[stmt.lineno - 2].strip().startswith("#"):
            bare.append(f"{os.path.relpath(path, ROOT)}:{stmt.lineno}")
  assert not bare, f"function-local imports without their reason: {sorted(set(bare))}"
