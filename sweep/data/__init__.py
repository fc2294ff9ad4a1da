"""Datasets as plain arrays: generated ones and the loaders of local files (``datasets``), and the
parsers of the files' published formats (``files``). Nothing is downloaded.

``from sweep.data import Dataset, load_dataset`` serves the datasets module's public names.
"""

from sweep.data.datasets import Dataset, load_dataset

__all__ = ["Dataset", "load_dataset"]
