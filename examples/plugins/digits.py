"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes) as a dataset plugin:
nothing is downloaded, the images ship inside scikit-learn."""

import torch
from sklearn.datasets import load_digits

from dlbench import register


@register.dataset("digits", fields={"test_fraction": 0.25})
def digits(root: str, seed: int, test_fraction: float) -> dict[str, torch.Tensor]:
    """scikit-learn's 8x8 digits (UCI), 1 x 8 x 8 images in [0, 1]; a seeded train / test split"""
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixel values are 0..16
    y = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(x))
    test, train = order[:n_test], order[n_test:]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}
