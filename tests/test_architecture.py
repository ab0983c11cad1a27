"""The shape of the source tree (shared/notes/architecture.md), checked on its AST.

- nothing above the disk face imports an engine module (VHD, QCOW2) or names a ``.vhd``
  or ``.qcow2`` file;
- only the CLI chooses the face's ``LOCAL_FILES`` backing policy (sr, bundle, transfer,
  stores and the plugin follow parents only where an SR keeps them);
- nothing above ``stores`` imports a particular store (only the registry and base);
- no import circles between vhdport's modules.
"""

import ast
import os
import re

import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
PACKAGE = os.path.join(SRC, "vhdport")
#: the disk face and the engines below it may speak of VHD
FORMAT_AWARE = ("vhdport.disk", "vhdport.vhd", "vhdport.vhd.format", "vhdport.qcow2")
ENGINE_MODULES = ("vhdport.vhd", "vhdport.vhd.format", "vhdport.qcow2", "vhdport.qcow2.format")
#: what the layers above stores may import from it
STORE_PUBLIC = ("vhdport.stores", "vhdport.stores.base")
VHD_NAME = re.compile(r"\.vhd(?![A-Za-z0-9_])")
QCOW2_NAME = re.compile(r"\.qcow2(?![A-Za-z0-9_])")
#: the only layers that may choose the face's LOCAL_FILES backing policy (qemu-img's trust)
LOCAL_FILES_ALLOWED = ("vhdport.cli", "vhdport.disk")
LOCAL_FILES_NAMES = ("LOCAL_FILES", "local-files")


def _modules():
    """{dotted name: (path, is_package)} of every module under src/vhdport."""
    found = {}
    for dirpath, _dirs, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            parts = os.path.relpath(path, SRC)[:-3].split(os.sep)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _tree(module):
    with open(MODULES[module][0], encoding="utf-8") as f:
        return ast.parse(f.read(), MODULES[module][0])


def _within(module, prefixes):
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _imports(module):
    """[(line, imported module)] of every import in ``module``, lazy ones included."""
    path, is_package = MODULES[module]
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                name = base + "." + alias.name
                found.append((node.lineno, name if name in MODULES else base))
    return [(line, name) for line, name in found if name.split(".")[0] == "vhdport"]


def _is_text(node):
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _docstrings(tree):
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and _is_text(body[0].value):
                ids.add(id(body[0].value))
    return ids


def _strings(module):
    tree = _tree(module)
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        if _is_text(node) and id(node) not in docs:
            yield node.lineno, node.value


ABOVE_FACE = sorted(m for m in MODULES if not _within(m, FORMAT_AWARE))


def test_the_walk_finds_the_layers():
    """The checks below look at real modules (a wrong path would make them pass vacuously)."""
    for layer in ("vhdport.transfer", "vhdport.sr.staging", "vhdport.bundle.reader",
                  "vhdport.kernel", "vhdport.plugin", "vhdport.cli.vhd_cmds", "vhdport.disk"):
        assert layer in MODULES
    assert ("vhdport.sr.scan" in ABOVE_FACE and "vhdport.vhd.disk" not in ABOVE_FACE
            and "vhdport.disk.vhd" not in ABOVE_FACE)
    assert any(name == "vhdport.disk" for _, name in _imports("vhdport.transfer"))


def _engine_imports(module):
    return [(line, name) for line, name in _imports(module) if _within(name, ENGINE_MODULES)]


def _qcow2_names(module):
    return [(line, text[:60]) for line, text in _strings(module) if QCOW2_NAME.search(text)]


@pytest.mark.parametrize("module", ABOVE_FACE)
def test_nothing_above_the_disk_face_imports_an_engine(module):
    bad = _engine_imports(module)
    assert bad == [], "{} imports an engine directly (use vhdport.disk): {}".format(
        module, bad)


@pytest.mark.parametrize("module", ABOVE_FACE)
def test_nothing_above_the_disk_face_names_a_qcow2_file(module):
    bad = _qcow2_names(module)
    assert bad == [], "{} names .qcow2 files (ask the disk face for suffixes): {}".format(
        module, bad)


FORMAT_NAMES = ("vhd", "qcow2")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _within(m, ("vhdport.sr",))))
def test_the_sr_does_not_branch_on_a_format_name(module):
    """sr/ asks the face (``disk.for_file_name(path)``...) and never compares format names."""
    bad = [(line, text) for line, text in _strings(module) if text.lower() in FORMAT_NAMES]
    assert bad == [], "{} spells a format name (go through the disk face): {}".format(
        module, bad)


def test_the_qcow2_checks_catch_what_they_look_for():
    """The patterns match the spellings they are meant to catch (and not look-alikes)."""
    assert QCOW2_NAME.search("<uuid>.qcow2") and QCOW2_NAME.search("x.qcow2.new")
    assert not QCOW2_NAME.search("a.qcow2x") and not QCOW2_NAME.search("qcow2")
    assert _within("vhdport.qcow2.chain", ENGINE_MODULES)
    assert "vhdport.disk.qcow2" not in ABOVE_FACE


def _local_files_uses(module):
    """[(line, spelling)] where ``module`` names the LOCAL_FILES policy (name, attribute,
    imported name or its string value)."""
    found = []
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Name) and node.id in LOCAL_FILES_NAMES:
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and node.attr in LOCAL_FILES_NAMES:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom):
            found.extend((node.lineno, a.name) for a in node.names if a.name in LOCAL_FILES_NAMES)
        elif _is_text(node) and node.value in LOCAL_FILES_NAMES:
            found.append((node.lineno, node.value))
    return found


@pytest.mark.parametrize("module", sorted(m for m in MODULES
                                          if not _within(m, LOCAL_FILES_ALLOWED)))
def test_only_the_cli_follows_parents_as_local_files(module):
    """SR safety: a hostile image's backing name is followed only beside it, below the CLI."""
    bad = _local_files_uses(module)
    assert bad == [], "{} chooses the LOCAL_FILES backing policy (only the CLI may): {}".format(
        module, bad)


def test_the_local_files_check_sees_the_cli_choose_it():
    """The check looks at the spellings really used (it would pass vacuously otherwise)."""
    from vhdport.disk import LOCAL_FILES

    assert LOCAL_FILES in LOCAL_FILES_NAMES
    assert _local_files_uses("vhdport.cli.disk_cmds")
    assert not _local_files_uses("vhdport.sr.scan")


@pytest.mark.parametrize("module", ABOVE_FACE)
def test_nothing_above_the_disk_face_names_a_vhd_file(module):
    bad = [(line, text[:60]) for line, text in _strings(module) if VHD_NAME.search(text)]
    assert bad == [], "{} names .vhd files (ask the disk face for suffixes): {}".format(
        module, bad)


@pytest.mark.parametrize("module", sorted(m for m in MODULES
                                          if not _within(m, ("vhdport.stores",))))
def test_nothing_above_stores_names_a_store(module):
    bad = [(line, name) for line, name in _imports(module)
           if _within(name, ("vhdport.stores",)) and name not in STORE_PUBLIC]
    assert bad == [], "{} imports a particular store (use vhdport.stores): {}".format(module, bad)


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circles():
    graph = {m: set(name for _, name in _imports(m) if name != m and name in MODULES)
             for m in MODULES}
    assert _cycle(graph) is None, "import circle: " + " -> ".join(_cycle(graph))
