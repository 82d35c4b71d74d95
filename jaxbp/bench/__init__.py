"""The benchmark behind ``jaxbp bench``: the hand-written step against jax.grad, PyTorch, numpy and the roofline."""
