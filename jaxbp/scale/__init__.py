"""Scale-out: hand-written gradients on sharded arrays, many devices and hosts, and mixed precision."""
