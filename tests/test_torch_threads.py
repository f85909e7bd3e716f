"""The torch backend's thread count: one share of the CPUs per process that shares them."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from rhvae_torch.backend import TorchBackend, default_threads  # noqa: E402


@pytest.fixture
def four_cpus(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    for name in ("RHVAE_NUM_THREADS", "PYTEST_XDIST_WORKER_COUNT", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_processes_that_share_the_cpus_split_them(four_cpus):
    assert default_threads() == 4
    four_cpus.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert default_threads() == 2
    four_cpus.setenv("LOCAL_WORLD_SIZE", "8")
    assert default_threads() == 1
    four_cpus.setenv("RHVAE_NUM_THREADS", "3")
    assert default_threads() == 3


def test_the_backend_lowers_the_count_and_keeps_an_explicit_one(four_cpus):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        four_cpus.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
        TorchBackend()
        assert torch.get_num_threads() == 1
        TorchBackend(threads=3)
        assert torch.get_num_threads() == 3
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            TorchBackend(threads=0)
    finally:
        torch.set_num_threads(before)
