"""qlam.data: the sequential image tasks (sMNIST, psMNIST, sFashion-MNIST, sCIFAR-10) and their loader."""
from .checks import DatasetFormatError
from .loader import BatchLoader
from .roots import DatasetNotFoundError, candidate_roots, writable_root
from .tasks import TASKS, TaskData, build_task, permutation

__all__ = ["BatchLoader", "DatasetFormatError", "DatasetNotFoundError", "TASKS", "TaskData", "build_task",
           "candidate_roots", "permutation", "writable_root"]
