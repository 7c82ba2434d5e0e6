"""Golden hand-computed cases shared by the metrics tests (imported, not a test module)."""

from __future__ import annotations

import numpy as np

# Golden 3-class 4x4 image, class 0 = background.
TARGET3 = np.array(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 0, 0],
        [2, 2, 0, 0],
    ]
)
PRED3 = np.array(
    [
        [0, 1, 1, 1],
        [0, 0, 1, 0],
        [2, 0, 0, 0],
        [2, 2, 1, 0],
    ]
)
# Pixel by pixel (target, pred):
#   row 0: (0,0) ok   (0,1) fn0+fp1  (1,1) ok       (1,1) ok
#   row 1: (0,0) ok   (0,0) ok       (1,1) ok       (1,0) fn1+fp0
#   row 2: (2,2) ok   (2,0) fn2+fp0  (0,0) ok       (0,0) ok
#   row 3: (2,2) ok   (2,2) ok       (0,1) fn0+fp1  (0,0) ok
# class 0: tp 6 (r0c0, r1c0, r1c1, r2c2, r2c3, r3c3), fp 2 (r1c3, r2c1), fn 2 (r0c1, r3c2), tn 6
# class 1: tp 3 (r0c2, r0c3, r1c2),                   fp 2 (r0c1, r3c2), fn 1 (r1c3),       tn 10
# class 2: tp 3 (r2c0, r3c0, r3c1),                   fp 0,              fn 1 (r2c1),       tn 12
GOLD3 = {"tp": (6, 3, 3), "fp": (2, 2, 0), "fn": (2, 1, 1), "tn": (6, 10, 12)}
