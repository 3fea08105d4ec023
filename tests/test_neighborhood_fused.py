"""The fused neighbourhood attention (``xsuperres.nn.neighborhood_fused``), run on the CPU in
Triton's interpreter (``TRITON_INTERPRET=1``, set in a subprocess before Triton is
imported) against the plain ``NeighborhoodAttention.forward_reference``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from xsuperres.nn import attention

pytest.importorskip("triton")

SCRIPT = textwrap.dedent(
    """
    import json, torch
    from xsuperres.nn.attention import NeighborhoodAttention
    from xsuperres.nn.neighborhood_fused import fused_neighborhood_attention

    rows = []
    # (channels, heads, radius, H, W, bias, dtype, channels_last, block)
    cases = [
        (8, 2, 1, 5, 7, True, "float32", False, None),
        (12, 4, 3, 8, 9, True, "float32", False, None),  # head width 3: padded to 4 lanes
        (16, 4, 2, 7, 7, False, "float32", False, None),
        (6, 2, 0, 4, 3, True, "float32", False, None),  # radius 0: each pixel itself
        (8, 2, 2, 6, 9, True, "float32", True, 16),  # strided qkv, 4 blocks with a remainder
        (8, 2, 2, 3, 4, True, "float32", False, None),  # window (5 px) wider than the image
        (16, 4, 2, 6, 6, True, "bfloat16", False, None),
    ]
    for C, heads, n, H, W, bias, dtype, cl, block in cases:
        torch.manual_seed(len(rows))
        m = NeighborhoodAttention(C, n, heads, rel_pos_bias=bias)
        if bias:
            torch.nn.init.normal_(m.rel_bias)
        x = torch.randn(2, C, H, W)  # two images: the batch index of the kernel
        with torch.no_grad():
            qkv = m.qkv(m.norm(x))
            if cl:
                qkv = qkv.contiguous(memory_format=torch.channels_last)
            qkv = qkv.to(getattr(torch, dtype))
            fused = fused_neighborhood_attention(qkv, heads, n, m.rel_bias, block=block)
            ref_full = m.forward_reference(x)
            full = x + m.proj(fused.float())
            full_fn = m.forward_fused(x)
        row = {"case": [C, heads, n, H, W, bias, dtype, cl, block],
               "dtype": str(fused.dtype), "shape": list(fused.shape),
               "diff": (full - ref_full).abs().max().item(),
               "diff_method": (full_fn - ref_full).abs().max().item(),
               "scale": ref_full.abs().max().item()}
        if dtype == "float32":  # gradients of the input and every parameter, against autograd
            xg = x.clone().requires_grad_(True)
            g = torch.randn_like(x)
            m.forward_reference(xg).backward(g)
            ref_grads = [xg.grad.clone()] + [p.grad.clone() for p in m.parameters()]
            m.zero_grad()
            xg.grad = None
            m.forward_fused(xg).backward(g)
            grads = [xg.grad] + [p.grad for p in m.parameters()]
            row["grad_diff"] = max((a - b).abs().max().item() for a, b in zip(grads, ref_grads))
            row["grad_scale"] = max(b.abs().max().item() for b in ref_grads)
            row["n_grads"] = sum(a is not None for a in grads)
        rows.append(row)
    print(json.dumps(rows))
    """
)


@pytest.fixture(scope="module")
def interpreted():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_fused_equals_plain(interpreted):
    assert len(interpreted) == 7
    for r in interpreted:
        C, heads, n, H, W, bias, dtype, cl, block = r["case"]
        assert r["shape"] == [2, C, H, W]
        assert r["dtype"] == f"torch.{dtype}"
        # float32: rounding of a different summation order; bfloat16: its 8-bit mantissa
        tol = 1e-5 if dtype == "float32" else 3e-2 * r["scale"]
        assert r["diff"] < tol, r
        if dtype == "float32":
            assert r["diff_method"] < tol, r
            # x, the norm's weight and bias, qkv's, proj's and (if any) the bias table
            assert r["n_grads"] == 7 + bias, r
            assert r["grad_diff"] < 1e-5 * max(1.0, r["grad_scale"]), r


def test_set_gpu_kernel_and_dispatch():
    previous = attention.set_gpu_kernel("triton")
    try:
        assert previous == "torch"
        assert attention._fused_applies("cuda")
        assert not attention._fused_applies("cpu")
    finally:
        assert attention.set_gpu_kernel(previous) == "triton"
    assert not attention._fused_applies("cuda")  # the default
    with pytest.raises(ValueError, match="kind must be one of"):
        attention.set_gpu_kernel("cuda")


def test_fused_refuses_cpu_tensors_outside_the_interpreter(monkeypatch):
    from xsuperres.nn.neighborhood_fused import fused_neighborhood_attention

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="runs on a CUDA device"):
        fused_neighborhood_attention(torch.zeros(1, 6, 4, 4), 2, 1)


def test_fused_checks_shapes_before_any_kernel(monkeypatch):
    from xsuperres.nn.neighborhood_fused import fused_neighborhood_attention

    monkeypatch.setenv("TRITON_INTERPRET", "1")  # past the device check; no kernel runs
    with pytest.raises(ValueError, match=r"multiple of 3 x heads = 6, got shape \(1, 8, 4, 4\)"):
        fused_neighborhood_attention(torch.zeros(1, 8, 4, 4), 2, 1)
    with pytest.raises(ValueError, match=r"qkv must be \(N, 3C, H, W\)"):
        fused_neighborhood_attention(torch.zeros(6, 4, 4), 2, 1)
    with pytest.raises(ValueError, match=r"rel_bias has shape \(2, 25\), expected \(2, 9\)"):
        fused_neighborhood_attention(torch.zeros(1, 6, 4, 4), 2, 1, torch.zeros(2, 25))
