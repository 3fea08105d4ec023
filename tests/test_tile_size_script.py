"""``benchmarks/tile_size.py``'s choice of domain: the NaN-free box whose scored LR steps
hold the most rain, against a brute-force loop over every box and time."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("tile_size", ROOT / "benchmarks" / "tile_size.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def brute_force(hr, S, T, L, steps, box):
    n = hr.shape[0] // T * T
    nl, Y, X = n // T, hr.shape[1] // S, hr.shape[2] // S
    best, arg = -1.0, None
    for t in range(L - 1 + steps - 1, nl):
        for i in range(Y - box // S + 1):
            for j in range(X - box // S + 1):
                blk = hr[(t - steps + 1) * T:(t + 1) * T, i * S:i * S + box, j * S:j * S + box]
                if np.isnan(hr[:n, i * S:i * S + box, j * S:j * S + box]).any():
                    continue
                total = blk.sum() / (S * S * T)  # the LR cells' means, summed
                if total > best + 1e-9:
                    best, arg = total, (t, i, j)
    t, i, j = arg
    return (slice((t - steps - L + 2) * T, (t + 1) * T), slice(i * S, i * S + box),
            slice(j * S, j * S + box))


@pytest.mark.parametrize("S, T, L, steps, box", [(2, 3, 2, 2, 4), (3, 1, 3, 1, 6), (2, 2, 1, 3, 2)])
def test_wettest_valid_box_matches_brute_force(S, T, L, steps, box):
    rng = np.random.default_rng(S * 100 + T * 10 + steps)
    hr = rng.gamma(0.5, 2.0, size=(T * 7 + 1, 5 * S, 6 * S)).astype(np.float32)
    hr[:, 0, S * 2] = np.nan  # a static hole, as outside radar coverage
    hr[:, -1, -1] = np.nan
    got = _script().wettest_valid_box(hr, S, T, L, steps, box)
    assert got == brute_force(hr, S, T, L, steps, box)
    ts = got[0]
    assert ts.stop - ts.start == (L - 1 + steps) * T  # context and scored steps
    assert not np.isnan(hr[:, got[1], got[2]]).any()


def test_wettest_valid_box_refuses_an_all_missing_file():
    hr = np.full((6, 8, 8), np.nan, dtype=np.float32)
    with pytest.raises(SystemExit, match="no NaN-free 4 px box"):
        _script().wettest_valid_box(hr, 2, 1, 2, 2, 4)
