"""Datasets: synthetic 2-D sets, small real sets shipped offline, and your own ``.npz``, as train/test splits."""

from . import synthetic as synthetic
from .real import IMAGE_SHAPES as IMAGE_SHAPES
from .loading import Dataset as Dataset
from .loading import load as load
from .loading import names as names
