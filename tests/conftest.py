"""Shared test settings."""

import torch

# One torch thread: on a 2-core machine small tensor ops are far faster single-threaded, and the
# integration tests run their daemons with threads: 1 so online and offline decode the same way.
torch.set_num_threads(1)
