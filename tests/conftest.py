"""Shared test configuration."""

import os

import torch

# Two cores on the reference machine; keep intra-op threads deterministic and bounded.
torch.set_num_threads(min(2, os.cpu_count() or 1))
