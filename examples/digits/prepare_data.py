"""Write train.npz and test.npz for mlp.json from scikit-learn's bundled digits (no download).

1,797 8x8 images of handwritten digits; pixels are scaled from 0..16 to [0, 1]. A stratified
split keeps 20% (360 images) aside as the test set, with a fixed seed. Needs scikit-learn:
``pip install 'graphengine[digits]'``.

    python examples/digits/prepare_data.py [OUT_DIR]      # default: examples/digits/data
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def prepare(out_dir: Path, test_size: float = 0.2, seed: int = 0) -> tuple[Path, Path]:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        sys.exit("this example needs scikit-learn: pip install 'graphengine[digits]'")
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float64)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, test = out_dir / "train.npz", out_dir / "test.npz"
    np.savez(train, x=x_train, label=y_train)
    np.savez(test, x=x_test, label=y_test)
    return train, test


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data"
    for path in prepare(out):
        with np.load(path) as npz:
            print(f"wrote {path}: x {npz['x'].shape}, label {npz['label'].shape}")
