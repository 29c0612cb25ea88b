"""The UCI optical handwritten digits as autoencoder data, from scikit-learn's bundled copy.

``sklearn.datasets.load_digits`` ships 1,797 images of 8x8 pixels with grey levels 0..16 inside
the scikit-learn package, so nothing is downloaded. Here each image is a row of 64 floats in
[0, 1] (grey level / 16), split once into train and test rows by a seeded permutation.
scikit-learn is an optional dependency (the ``experiments`` and ``test`` extras).
"""

from __future__ import annotations

import torch

__all__ = ["DIGIT_PIXELS", "load_digit_images"]

#: Pixels per image (8 x 8).
DIGIT_PIXELS = 64


def load_digit_images(test_fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, test)`` float32 tensors ``(N, 64)`` in [0, 1]; ``test_fraction`` of the 1,797
    images (rounded down) go to ``test``, chosen by a permutation seeded with ``seed``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the digits data needs scikit-learn: pip install 'tying[experiments]'") from exc
    images = torch.from_numpy(load_digits().data).float() / 16.0
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(images) * test_fraction)
    return images[order[n_test:]], images[order[:n_test]]
