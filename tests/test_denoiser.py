"""Tests of :mod:`xsuperres.nn.denoiser`: the forward passes shared by inference and training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xsuperres.config import inference_mass_conservation

from xsuperres.config import SRConfig
from xsuperres.model import SRModel, normalize_precip
from xsuperres.nn.denoiser import ResidualDenoiser, conserve_mass, mean_stage, upsample_context
from xsuperres.nn.diffusion import LinearSchedule
from xsuperres.nn.unet import DiffusionUNet
from xsuperres.training import losses

CAP = 55.0


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def _conditioning(B, L, T, H, seed=0):
    g = torch.Generator().manual_seed(seed)
    r0 = torch.randn((B, T, H, H), generator=g)
    D = torch.rand((B, T, H, H), generator=g)
    ctx = torch.rand((B, L, H, H), generator=g)
    return r0, D, ctx[:, -1:], ctx


@pytest.fixture(scope="module")
def den() -> ResidualDenoiser:
    torch.manual_seed(0)
    return ResidualDenoiser(DiffusionUNet(2, 2), LinearSchedule(0.02, J=50)).eval()


def test_forward_is_the_v_network(den):
    r0, D, lr_up, ctx = _conditioning(3, 2, 2, 8)
    j = torch.tensor([1, 25, 50])
    with torch.no_grad():
        v = den(r0, j, D, lr_up, ctx)
        assert torch.equal(v, den.net(r0, D, lr_up, ctx, j))
        assert torch.equal(den.bind(D, lr_up, ctx)(r0, j), v)
        # on the CPU, amp changes nothing (autocast is CUDA only)
        assert torch.equal(den(r0, j, D, lr_up, ctx, amp=True), v)


def test_bind_encodes_the_context_once(den, monkeypatch):
    """bind computes the step-independent cross-attention keys once; every sampler step
    then gives bitwise the velocity of the plain forward."""
    r0, D, lr_up, ctx = _conditioning(3, 2, 2, 8)
    calls = []
    encode = den.net.encode_context

    def counting(context):
        calls.append(context.shape)
        return encode(context)

    monkeypatch.setattr(den.net, "encode_context", counting)
    with torch.no_grad():
        fn = den.bind(D, lr_up, ctx)
        for j in (50, 30, 10, 1):
            jj = torch.full((3,), j)
            assert torch.equal(fn(r0, jj), den.net(r0, D, lr_up, ctx, jj))
    assert len(calls) == 1 + 4  # bind once; the 4 plain reference calls encode each time


def test_loss_is_the_v_loss_by_hand(den):
    """``loss`` = mean((v_hat(r_j, j) - v)^2), r_j = sqrt(abar_j) r0 + sqrt(1 - abar_j) eps,
    v = sqrt(abar_j) eps - sqrt(1 - abar_j) r0, with j then eps drawn from the generator."""
    B = 4
    r0, D, lr_up, ctx = _conditioning(B, 2, 2, 8, seed=1)
    with torch.no_grad():
        got = den.loss(r0, D, lr_up, ctx, torch.Generator().manual_seed(7))
        g = torch.Generator().manual_seed(7)
        j = torch.randint(1, den.schedule.J + 1, (B,), generator=g)
        eps = torch.randn(r0.shape, generator=g)
        abar = den.schedule.abar[j]  # float64, abar_j of the schedule
        a = abar.sqrt().float().view(B, 1, 1, 1)
        s = (1.0 - abar).sqrt().float().view(B, 1, 1, 1)
        r_j = a * r0 + s * eps
        v = a * eps - s * r0
        want = ((den.net(r_j, D, lr_up, ctx, j) - v) ** 2).mean()
    assert got.ndim == 0
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    # an independent check of the schedule values used above
    beta = 1e-4 + (j[0].item() - 1) / 49 * (0.02 - 1e-4)
    prod = math.prod(1 - (1e-4 + (k - 1) / 49 * (0.02 - 1e-4)) for k in range(1, j[0].item() + 1))
    assert beta > 0 and float(abar[0]) == pytest.approx(prod, rel=1e-12)


def test_loss_has_gradients_for_the_network_only(den):
    r0, D, lr_up, ctx = _conditioning(2, 2, 2, 8, seed=2)
    den.zero_grad()
    den.loss(r0, D, lr_up, ctx, 3).backward()
    assert all(p.grad is not None for p in den.net.parameters())
    den.zero_grad()


# ----------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def m103() -> SRModel:
    torch.manual_seed(0)
    return SRModel(SRConfig.recipe(10, 3, cap=CAP),
                   {"topo_min": 0.0, "topo_max": 2000.0, "residual_scale": 0.5})


def _lr(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.gamma(0.6, 3.0, size=shape) * (rng.random(shape) > 0.3)).astype(np.float32)


def test_state_dict_and_parameters_unchanged_by_the_denoiser(m103):
    keys = list(m103.state_dict())
    assert m103.denoiser.net is m103.diffusion_net and m103.denoiser is m103.denoiser
    assert not any(k.startswith("denoiser") for k in keys)
    assert {k.split(".")[0] for k in keys} == {"mean_net", "diffusion_net"}
    n = len(list(m103.mean_net.parameters())) + len(list(m103.diffusion_net.parameters()))
    assert len(list(m103.parameters())) == n
    other = SRModel(m103.config, m103.normalization)
    assert other.denoiser.net is other.diffusion_net is not m103.diffusion_net


def test_predict_samples_with_the_denoiser_forward(m103, monkeypatch):
    """``predict`` calls ``denoiser.forward`` (here: v_hat = 0) once per sampler step; one
    DDIM step from r_J gives r0 = sqrt(abar_J) r_J, then y = cap * MC(D + rs r0)."""
    c = m103.config
    lr = _lr((2, c.L, 3, 3), seed=4)
    calls = []

    def zero_v(r_j, j, D, lr_up, context, *, encoded=None, amp=False):
        calls.append((j.clone(), D.clone(), lr_up.clone(), context.clone()))
        return torch.zeros_like(r_j)

    monkeypatch.setattr(m103.denoiser, "forward", zero_v)
    H = 3 * c.S

    def noise_fn(i, m, k):
        return np.full((c.T, H, H), 0.5 + i + 2 * m, np.float32)

    y = m103.predict(lr, n_members=2, sampler="ddim", steps=1, noise_fn=noise_fn, device="cpu")
    assert len(calls) == 1  # 4 items in one batch, one step
    j, D, lr_up, context = calls[0]
    J = m103.schedule.J
    assert j.tolist() == [J] * 4
    x = torch.from_numpy(lr)
    xn = normalize_precip(x, CAP)
    torch.testing.assert_close(context, upsample_context(xn, c.S).repeat_interleave(2, 0))
    torch.testing.assert_close(lr_up, context[:, -1:])
    np.testing.assert_allclose(D.numpy().reshape(2, 2, c.T, H, H)[:, 0],
                               m103.predict_mean(lr, device="cpu") / CAP, rtol=1e-6, atol=1e-7)
    r_J = torch.tensor([0.5 + i + 2 * m for i in range(2) for m in range(2)]).view(4, 1, 1, 1)
    r0 = math.sqrt(float(m103.schedule.abar[J])) * r_J.expand(4, c.T, H, H)
    target = (x[:, -1] / CAP).repeat_interleave(2, 0)
    c_out = c.replace(mass_conservation=inference_mass_conservation(c))  # "auto" at inference
    want = CAP * conserve_mass(D + 0.5 * r0, target, c_out)
    np.testing.assert_allclose(y.reshape(4, c.T, H, H), want.numpy(), rtol=1e-5, atol=1e-6)

    calls.clear()
    n = m103.check_sampler("dpmpp_2m", 3)
    m103.predict(lr, n_members=2, sampler="dpmpp_2m", steps=3, device="cpu", batch_size=2)
    assert len(calls) == 2 * n  # two batches of 2 items


def test_predict_mean_is_the_mean_stage(m103):
    c = m103.config
    lr = _lr((2, c.L, 3, 3), seed=5)
    x = torch.from_numpy(lr)
    H = 3 * c.S
    with torch.no_grad():
        D, ctx_up = mean_stage(m103.mean_net, normalize_precip(x, CAP), torch.zeros(2, 1, H, H),
                               x[:, -1] / CAP, c)
    assert ctx_up.shape == (2, c.L, H, H)
    # the training mode, asked for explicitly ("auto" picks block for this 4 x 4 LR-pixel tile)
    np.testing.assert_array_equal(m103.predict_mean(lr, device="cpu", mass_conservation="tile"),
                                  (D * CAP).numpy())


def test_training_uses_the_mean_stage(m103):
    """The training mean (``losses.mean_output``) is ``mean_stage`` on the normalized context."""
    c = m103.config
    g = torch.Generator().manual_seed(6)
    ctx = torch.rand((2, c.L, 3, 3), generator=g)
    topo = torch.rand((2, 1, 3 * c.S, 3 * c.S), generator=g)
    batch = {"context": ctx, "topography": topo, "target": torch.rand((2, c.T, 30, 30), generator=g)}
    dev = torch.device("cpu")
    with torch.no_grad():
        ctx2, ctx_up, topo2, _ = losses.batch_inputs(batch, c.S, dev)
        assert torch.equal(ctx_up, upsample_context(ctx, c.S))
        for mc in (True, False):
            D = losses.mean_output(m103, ctx2, ctx_up, topo2, mc, dev)
            want, _ = mean_stage(m103.mean_net, ctx, topo, ctx[:, -1], c, mc=mc)
            assert torch.equal(D, want)
        raw = m103.mean_net(ctx_up, topo)
        assert torch.equal(losses.mean_output(m103, ctx2, ctx_up, topo2, False, dev), raw)
