"""Write the fixed digits test split (tests/data/digits/split.npz) that every digits script and test uses.

scikit-learn's digits ship inside scikit-learn (1,797 labelled 8x8 images, 0..16): no download.
The split is a seeded permutation, so re-running this gives the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "digits" / "split.npz"
TEST_FRACTION = 0.2
SEED = 0


def main() -> None:
    digits = load_digits()
    order = np.random.default_rng(SEED).permutation(len(digits.target))
    n_test = int(round(TEST_FRACTION * len(order)))
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, train_idx=train_idx, test_idx=test_idx,
                        test_x=digits.images[test_idx].astype(np.uint8), test_y=digits.target[test_idx])
    print(f"wrote {OUT}: {len(train_idx)} train, {len(test_idx)} test")


if __name__ == "__main__":
    main()
