"""qlam.data on tiny files in the real formats (IDX gz, CIFAR python batches) written by the tests."""
import pytest
import torch

from qlam.data import BatchLoader, DatasetNotFoundError, build_task, candidate_roots, permutation
from qlam.train.config import config_from_dict
from train_fixtures import write_cifar_batches, write_idx_dataset


def _task(root, **task):
    return config_from_dict({"task": {"data_root": str(root), "val_size": 32, **task}}).task


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_idx_dataset(root / "mnist", n_train=200, n_test=50)
    write_idx_dataset(root / "FashionMNIST" / "raw", n_train=120, n_test=30, seed=5)
    write_cifar_batches(root, per_batch=20, n_test=30)
    return root


def test_smnist_from_gz_files(idx_root):
    task = build_task(_task(idx_root))
    assert (idx_root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()  # unpacked for torchvision
    assert task.train_x.shape == (168, 784, 1) and task.train_x.dtype == torch.uint8
    assert task.val_x.shape == (32, 784, 1) and task.test_x.shape == (50, 784, 1)
    assert task.seq_len == 784 and task.channels == 1 and task.permutation is None
    # A seeded split: the same seed gives the same images; another seed others.
    again = build_task(_task(idx_root))
    assert torch.equal(again.val_x, task.val_x)
    other = build_task(_task(idx_root, split_seed=1))
    assert not torch.equal(other.val_x, task.val_x)


def test_subsets_and_downsample(idx_root):
    task = build_task(_task(idx_root, train_subset=40, val_subset=8, test_subset=10, downsample=2))
    assert task.train_x.shape == (40, 196, 1) and task.val_x.shape == (8, 196, 1) and task.test_x.shape[0] == 10


def test_psmnist_permutation_is_the_seeded_one(idx_root):
    plain, perm = build_task(_task(idx_root)), build_task(_task(idx_root, name="psmnist"))
    torch.manual_seed(12008)
    expected = torch.randperm(784)
    assert torch.equal(perm.permutation, expected) and torch.equal(permutation(784, 12008), expected)
    assert torch.equal(perm.train_x, plain.train_x[:, expected])


def test_fashion_mnist_from_raw_folder(idx_root):
    task = build_task(_task(idx_root, name="sfmnist"))
    assert task.train_x.shape == (88, 784, 1)


def test_cifar_rgb_and_gray(idx_root):
    rgb = build_task(_task(idx_root, name="scifar10", verify_md5=False))
    gray = build_task(_task(idx_root, name="scifar10_gray", verify_md5=False))
    assert rgb.train_x.shape == (68, 1024, 3) and rgb.test_x.shape == (30, 1024, 3) and rgb.mean.shape == (3,)
    assert gray.train_x.shape == (68, 1024, 1)
    # Luma of the first pixel of the first training image.
    r, g, b = rgb.train_x[0, 0].float()
    assert abs(gray.train_x[0, 0, 0].item() - (0.299 * r + 0.587 * g + 0.114 * b).item()) <= 0.5 + 1e-4


def test_cifar_md5_check_refuses_unknown_files(idx_root):
    with pytest.raises(RuntimeError, match="verify_md5=false"):
        build_task(_task(idx_root, name="scifar10", verify_md5=True, split_seed=3))


def test_missing_dataset_names_paths_and_remedy(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        build_task(_task(tmp_path / "empty"))
    message = str(info.value)
    assert str(tmp_path / "empty") in message and "MNIST/raw" in message and "data_root" in message
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        build_task(_task(tmp_path / "empty", name="scifar10"))


def test_candidate_roots_include_the_shared_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("QLAM_DATA", str(tmp_path))
    roots = candidate_roots(None)
    assert roots[0] == tmp_path
    assert any(str(r).endswith("shared/data") for r in roots)


def test_loader_normalises_and_orders_by_seed_and_epoch(idx_root):
    task = build_task(_task(idx_root))
    loader = BatchLoader(task.train_x, task.train_y, task.mean, task.std, 16, shuffle=True, seed=1, drop_last=True)
    assert len(loader) == 168 // 16
    xs = torch.cat([x for x, _ in loader.batches(0)])
    assert xs.dtype == torch.float32 and abs(xs.mean().item()) < 0.1 and abs(xs.std().item() - 1) < 0.1
    first = [y for _, y in loader.batches(0)]
    assert all(torch.equal(a, b) for a, b in zip(first, (y for _, y in loader.batches(0))))
    assert not torch.equal(torch.cat(first), torch.cat([y for _, y in loader.batches(1)]))
    assert torch.equal(next(iter(loader.batches(0, start=3)))[1], first[3])
    # Two ranks split each global batch between them.
    shards = [BatchLoader(task.train_x, task.train_y, task.mean, task.std, 16, shuffle=True, seed=1,
                          drop_last=True, rank=r, world=2) for r in (0, 1)]
    y0, y1 = (next(iter(s.batches(0)))[1] for s in shards)
    assert sorted((torch.cat([y0, y1])).tolist()) == sorted(first[0].tolist())
    with pytest.raises(ValueError, match="divisible"):
        BatchLoader(task.train_x, task.train_y, task.mean, task.std, 15, shuffle=True, world=2)
