"""Package layering: wssis_d2.data (the data contract) imports neither wssis_d2.mrn nor wssis_d2.formats,
and the formats package imports no pipeline, model or trainer code. Checked on the source with ``ast``
(every import statement, at any depth, relative ones resolved), so an import inside a function counts."""
import ast
import os

import wssis_d2

PACKAGE_DIR = os.path.dirname(wssis_d2.__file__)


def _imports(subpackage):
    """{module file: set of absolute module names it imports} for every .py under ``wssis_d2/<subpackage>``."""
    out = {}
    root = os.path.join(PACKAGE_DIR, subpackage)
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-3].replace(os.sep, ".")
            package = rel.rsplit(".", 1)[0] if name != "__init__.py" else rel[: -len(".__init__")]
            names = set()
            for node in ast.walk(ast.parse(open(path).read(), path)):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    base = package.split(".")
                    if node.level:
                        base = base[: len(base) - node.level + 1]
                        mod = ".".join(base + ([node.module] if node.module else []))
                    else:
                        mod = node.module
                    names.add(mod)
                    names.update(f"{mod}.{a.name}" for a in node.names)
            out[path] = names
    return out


def _offenders(subpackage, forbidden):
    return {path: sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))
            for path, names in _imports(subpackage).items()
            if any(n == f or n.startswith(f + ".") for n in names for f in forbidden)}


def test_data_imports_neither_mrn_nor_formats():
    assert _imports("data"), "no modules found under wssis_d2/data"
    bad = _offenders("data", ("wssis_d2.mrn", "wssis_d2.formats"))
    # the old import paths kept for users (thin re-exports of wssis_d2.formats) are the only exception
    shims = {os.path.join(PACKAGE_DIR, "data", f) for f in
             ("label_images.py", "review_export.py", "cells_psc.py", "custom_example.py",
              os.path.join("importers", "__init__.py"))}
    assert {p: n for p, n in bad.items() if p not in shims or any("mrn" in x for x in n)} == {}
    for path in shims:
        source = open(path).read()
        assert "wssis_d2.formats" in source.splitlines()[0] and source.count("\n") <= 4, path


def test_formats_know_no_pipeline_or_model():
    assert _imports("formats")
    assert _offenders("formats", ("wssis_d2.mrn", "wssis_d2.pipeline", "wssis_d2.modeling", "wssis_d2.engine",
                                  "wssis_d2.predict", "wssis_d2.pseudo", "torch", "detectron2")) == {}


def test_the_check_sees_relative_imports():
    found = _imports("mrn")[os.path.join(PACKAGE_DIR, "mrn", "datasets.py")]
    assert "wssis_d2.data.datasets" in found and "wssis_d2.data.datasets.register_dataset" in found
