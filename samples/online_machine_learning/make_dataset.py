"""Writes the tutorial's dataset: dataset/mnist_{train,evaluate,predict}.npz, arrays x_train and y_train.

No download is possible here, so the data is scikit-learn's bundled handwritten digits (8x8 images,
1,797 samples), shuffled once and split 1,000 / 400 / 397. Usage: python make_dataset.py [FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def main(folder: Path) -> None:
    digits = load_digits()
    order = np.random.default_rng(42).permutation(len(digits.target))
    images, labels = digits.images[order], digits.target[order]
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", slice(0, 1000)), ("evaluate", slice(1000, 1400)), ("predict", slice(1400, None))):
        np.savez_compressed(folder / f"mnist_{name}.npz", x_train=images[part], y_train=labels[part])
    print(f"wrote {folder}/mnist_{{train,evaluate,predict}}.npz")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "dataset")
