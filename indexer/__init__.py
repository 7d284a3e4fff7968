"""Documents in, lexical and dense indexes out; the shared vocabulary (Document, Hit)."""

import os

# Set before torch starts OpenMP (every package of ours imports this one first). With the
# default spinning wait policy, torch's threads stall for whole scheduler slices whenever another
# process wants the same cores: on 2 cores next to a busy process, one query encoding took
# 790 ms spinning vs 9 ms passive, and batch embedding 11.7 vs 21.5 docs/s. A user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
