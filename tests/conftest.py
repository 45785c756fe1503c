"""Shared test helpers."""
import importlib.util
import os

import pytest
import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def load_train_net():
    """Import the repository's ``train_net.py`` (a script, not part of the package) as a module."""
    spec = importlib.util.spec_from_file_location("train_net", os.path.join(REPO, "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def train_net():
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
