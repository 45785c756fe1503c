"""Shared test helpers."""
import contextlib
import importlib.util
import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs the files in 2 pytest-xdist workers on the 2 cores: one torch thread each, so that the
    # workers do not oversubscribe the cores (two OpenMP teams of 2 on 2 cores wait for each other).
    torch.set_num_threads(1)


def load_script(relpath, name=None):
    """Import a script of the repository (``train_net.py``, ``tools/*.py``: not part of the package)."""
    name = name or os.path.splitext(os.path.basename(relpath))[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_train_net():
    """The repository's ``train_net.py`` as a module."""
    return load_script("train_net.py")


@contextlib.contextmanager
def saved_catalogs():
    """Leave detectron2's DatasetCatalog / MetadataCatalog as they were (for code that registers names)."""
    datasets, metadata = dict(DatasetCatalog.data), dict(MetadataCatalog.data)
    try:
        yield
    finally:
        DatasetCatalog.data.clear()
        DatasetCatalog.data.update(datasets)
        MetadataCatalog.data.clear()
        MetadataCatalog.data.update(metadata)


@contextlib.contextmanager
def free_builtin_names(prefixes=("coco_2017_train_", "wssis_shapes_")):
    """``saved_catalogs`` with the built-in split names unregistered inside: ``train_net.py``'s import
    registers them under the default root, and a test that registers them under its own root would be
    refused (a name stands for one file in a process; several test files share one xdist worker)."""
    with saved_catalogs():
        for name in [n for n in DatasetCatalog.list() if n.startswith(prefixes)]:
            DatasetCatalog.remove(name)
        for name in [n for n in list(MetadataCatalog.data) if n.startswith(prefixes)]:
            MetadataCatalog.remove(name)
        yield


def tiny_model_weights(config, path, *opts):
    """A checkpoint ``{"model": state_dict}`` at ``path`` of the model of ``config`` (repository-relative,
    ``opts`` merged) built from seed 0, no weights loaded: the same file for every caller."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from wssis_d2 import add_wssis_config
    import wssis_d2.mrn  # noqa: F401  (registers MaskRefineNet)

    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, config))
    cfg.merge_from_list(["MODEL.WEIGHTS", "", *opts])
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return path


# The longest test files, started first: `make test` runs files in 2 xdist workers (--dist loadfile, files in
# collection order), so the long ones do not start last and leave one core idle at the end.
SLOW_FIRST = ("test_learning.py", "test_distributed.py", "test_pipeline.py", "test_resume_kill.py", "test_predict.py",
              "test_tiling.py", "test_mrn.py", "test_custom_pipeline.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))  # stable: files stay whole


@pytest.fixture(scope="session")
def train_net():
    """train_net.py as a module, without the names it registers at import (the standard names under
    $DETECTRON2_DATASETS): a name stands for one file in a process, and later tests register those names
    under their own roots."""
    with saved_catalogs():
        return load_train_net()


@pytest.fixture
def one_thread():
    """One torch intra-op thread: small CPU nets on a 2-core machine mostly wait for each other with more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread_module():
    """``one_thread`` for a whole module: ``pytestmark = pytest.mark.usefixtures("one_thread_module")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
