"""The control tests run torch on one thread: their tensors are small, and the CI has 2 cores."""

import torch

torch.set_num_threads(1)
