"""Benchmark settings: 2 threads, like the reference workload of DESIGN §6."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=2")

import torch  # noqa: E402

torch.set_num_threads(2)
