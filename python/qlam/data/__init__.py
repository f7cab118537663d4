"""qlam.data: the sequential image tasks (sMNIST, psMNIST, sFashion-MNIST, sCIFAR-10) and their loader."""
from .checks import DatasetFormatError
from .loader import BatchLoader
from .roots import NO_DOWNLOAD_ENV, DatasetNotFoundError, candidate_roots, download_allowed, writable_root
from .tasks import TASKS, TaskData, build_task, permutation, task_shape

__all__ = ["BatchLoader", "DatasetFormatError", "DatasetNotFoundError", "NO_DOWNLOAD_ENV", "TASKS", "TaskData",
           "build_task", "candidate_roots", "download_allowed", "permutation", "task_shape", "writable_root"]
