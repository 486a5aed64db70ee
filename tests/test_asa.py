"""ASA: shapes, per-sample masks, learnable importance, parameter count, lam and reduction."""

import pytest
import torch

import leansnn as ls
from leansnn.attention import ASA, topk_mask


def _x(T=4, B=3, C=6, H=5, W=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, C, H, W, generator=g, dtype=dtype)


def test_shape_and_top_level_name():
    asa = ls.ASA(T=4, channels=6)
    x = _x()
    y = asa(x)
    assert isinstance(asa, ASA)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    # ASA only rescales: every output is x times a gate in (0, 1)
    assert (y.abs() <= x.abs() + 1e-6).all()
    assert not torch.allclose(y, x)


def test_batch_of_one():
    asa = ASA(T=4, channels=6)
    y = asa(_x(B=1))
    assert y.shape == (4, 1, 6, 5, 5)
    y.sum().backward()
    assert asa.alpha.grad is not None


def test_output_independent_of_batch_neighbours():
    torch.manual_seed(0)
    asa = ASA(T=4, channels=8).double()
    big = _x(B=8, C=8, seed=1, dtype=torch.float64)
    ref = torch.cat([asa(big[:, i:i + 1]) for i in range(8)], 1)
    ref_masks = torch.cat([asa.masks(big[:, i:i + 1])[2] for i in range(8)], 1)
    for bs in (1, 3, 8):
        for perm_seed in (0, 1):
            perm = torch.randperm(8, generator=torch.Generator().manual_seed(perm_seed))
            xs = big[:, perm]
            outs, masks = [], []
            for i in range(0, 8, bs):
                outs.append(asa(xs[:, i:i + bs]))
                masks.append(asa.masks(xs[:, i:i + bs])[2])
            out = torch.cat(outs, 1)
            mask = torch.cat(masks, 1)
            assert torch.equal(mask, ref_masks[:, perm])
            torch.testing.assert_close(out, ref[:, perm], rtol=0, atol=1e-12)


def test_masks_per_sample_differ():
    # with per-sample masks, two different samples get different masks (the authors' union
    # over the batch would give every sample the same mask)
    asa = ASA(T=4, channels=8)
    _, _, imp = asa.masks(_x(B=4, C=8, seed=3))
    assert not all(torch.equal(imp[:, 0], imp[:, b]) for b in range(1, 4))


@pytest.mark.parametrize("lam,T,C", [(0.5, 4, 8), (0.25, 8, 8), (0.75, 4, 6), (0.1, 4, 6)])
def test_lam_sets_mask_sizes(lam, T, C):
    asa = ASA(T=T, channels=C, lam=lam)
    kc, kt, imp = asa.masks(_x(T=T, B=2, C=C))
    assert asa.k_channels == int(lam * C) and asa.k_steps == int(lam * T)
    assert (kc.sum(2) == int(lam * C)).all()
    assert (kt.sum(0) == int(lam * T)).all()
    assert torch.equal(imp, ((kc + kt) == 1).float())
    assert set(imp.unique().tolist()) <= {0.0, 1.0}


def test_lam_divides_group_means():
    # the important group's mean is divided by lam: changing lam with fixed masks changes y
    torch.manual_seed(0)
    a1 = ASA(T=4, channels=8, lam=0.5)
    a2 = ASA(T=4, channels=8, lam=0.5)
    a2.load_state_dict(a1.state_dict())
    a2.lam = 0.5 + 1e-9  # same masks (floor), different scaling
    x = _x(C=8)
    torch.testing.assert_close(a1(x), a2(x))
    a2.lam = 0.51  # floor(0.51 * 8) = 4, floor(0.51 * 4) = 2: same masks, other scaling
    assert torch.equal(a1.masks(x)[2], a2.masks(x)[2])
    assert not torch.allclose(a1(x), a2(x))


@pytest.mark.parametrize("T,r", [(8, 1), (8, 2), (8, 4), (6, 4), (4, 1), (5, 5)])
def test_parameter_count_matches_formula(T, r):
    asa = ASA(T=T, channels=16, reduction=r)
    n = sum(p.numel() for p in asa.parameters())
    assert n == ASA.num_parameters(T, r)
    if r == 1:
        assert n == 2 * 18 + 2 + T * T
        assert isinstance(asa.fc, torch.nn.Linear)
    else:
        assert n == 2 * 18 + 2 + 2 * T * (T // r)
        assert asa.fc[0].out_features == T // r
        assert isinstance(asa.fc[1], torch.nn.ReLU)
    assert asa(_x(T=T, C=16)).shape == (T, 3, 16, 5, 5)


def test_importance_parameters_receive_gradients_and_learn():
    torch.manual_seed(0)
    asa = ASA(T=4, channels=8, reduction=2)
    x = _x(B=4, C=8, seed=5)
    target = torch.randn_like(x)
    opt = torch.optim.Adam(asa.parameters(), lr=0.05)
    start = {k: v.detach().clone() for k, v in asa.named_parameters()}
    grads = []
    for _ in range(4):
        opt.zero_grad()
        loss = ((asa(x) - target) ** 2).mean()
        loss.backward()
        g = {k: v.grad.detach().clone() for k, v in asa.named_parameters()}
        for name in ("alpha", "beta", "fc.0.weight", "fc.2.weight"):
            assert g[name].abs().sum() > 0, f"{name} got no gradient"
        grads.append(g)
        opt.step()
    for name, p in asa.named_parameters():
        assert not torch.equal(p.detach(), start[name]), f"{name} did not change"
    # the gradients themselves change as the parameters move
    assert not torch.equal(grads[0]["alpha"], grads[-1]["alpha"])


def test_straight_through_forward_is_hard():
    m = torch.randn(3, 7, requires_grad=True)
    k = topk_mask(m, 3, dim=1)
    assert torch.equal(k.detach(), torch.zeros(3, 7).scatter_(1, m.detach().topk(3, 1)[1], 1.0))
    (k * torch.arange(7.0)).sum().backward()
    assert m.grad.abs().sum() > 0
    assert torch.equal(topk_mask(m, 0, 1), torch.zeros(3, 7))
    assert torch.equal(topk_mask(m, 7, 1), torch.ones(3, 7))


def test_input_gradient_flows():
    asa = ASA(T=4, channels=6)
    x = _x().requires_grad_()
    asa(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [dict(lam=0.0), dict(lam=1.0), dict(reduction=0),
                                    dict(reduction=9), dict(T=0), dict(temperature=0.0),
                                    dict(impl="triton")])
def test_bad_arguments(kwargs):
    args = dict(T=8, channels=4)
    args.update(kwargs)
    with pytest.raises(ValueError):
        ASA(**args)


def test_bad_input_shape():
    asa = ASA(T=4, channels=6)
    with pytest.raises(ValueError, match="T=4, C=6"):
        asa(_x(T=3))
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        asa(torch.randn(4, 6, 5, 5))


def _both_impls(asa: ASA, x: torch.Tensor, gy: torch.Tensor) -> dict:
    """``{impl: (y, dL/dx, {name: dL/dparam or None})}`` for the reference and fused paths."""
    res = {}
    for impl in ("reference", "fused"):
        asa.impl = impl
        asa.zero_grad()
        x.grad = None
        y = asa(x)
        y.backward(gy)
        res[impl] = (y.detach(), x.grad.clone(),
                     {k: None if v.grad is None else v.grad.clone()
                      for k, v in asa.named_parameters()})
    return res


@pytest.mark.parametrize("r,lam,C,shape", [(1, 0.5, 6, (5, 4)), (2, 0.25, 8, (3, 3)),
                                           (4, 0.75, 5, (4, 6)), (1, 0.125, 8, (2, 2))])
def test_fused_matches_reference_values_and_gradients(r, lam, C, shape):
    torch.manual_seed(r)
    T = 8
    asa = ASA(T, C, lam=lam, reduction=r).double()
    with torch.no_grad():
        for p in asa.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    # shifted inputs: every group maximum is a unique positive value (no ties)
    x = (torch.randn(T, 3, C, *shape, dtype=torch.float64) + 2).requires_grad_()
    gy = torch.randn(T, 3, C, *shape, dtype=torch.float64)
    res = _both_impls(asa, x, gy)
    (y0, gx0, g0), (y1, gx1, g1) = res["reference"], res["fused"]
    torch.testing.assert_close(y1, y0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx1, gx0, rtol=1e-10, atol=1e-10)
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-10, atol=1e-10, msg=k)
    assert g1["alpha"].abs() > 0 and g1["beta"].abs() > 0


def test_fused_no_grad_and_non_contiguous_input():
    asa = ASA(T=4, channels=6)
    x = _x(C=6).transpose(3, 4)  # non-contiguous view
    with torch.no_grad():
        y = asa(x)
    asa.impl = "reference"
    torch.testing.assert_close(y, asa(x))


# --- behaviour="authors": the authors' code, reproduced for comparison only ---------------

def _union_of_per_sample(asa_fixed: ASA, x: torch.Tensor) -> torch.Tensor:
    """K_c XOR K_t where K_c, K_t are the unions over the batch of the per-sample hard masks."""
    kc, kt, _ = asa_fixed.masks(x)
    kc, kt = kc.amax(1, keepdim=True), kt.amax(1, keepdim=True)
    return (kc + kt - 2 * kc * kt).expand(-1, x.shape[1], -1)


@pytest.mark.parametrize("lam", [0.25, 0.5, 0.75])
def test_authors_masks_are_batch_unions(lam):
    torch.manual_seed(0)
    fixed = ASA(T=4, channels=8, lam=lam)
    authors = ASA(T=4, channels=8, lam=lam, behaviour="authors")
    authors.load_state_dict(fixed.state_dict())
    x = _x(B=5, C=8, seed=4)
    _, _, imp = authors.masks(x)
    assert torch.equal(imp, _union_of_per_sample(fixed, x))
    # every sample gets the same mask, so a sample's output depends on its neighbours
    assert all(torch.equal(imp[:, 0], imp[:, b]) for b in range(1, 5))
    alone = authors(x[:, :1])
    assert not torch.allclose(alone, authors(x)[:, :1])


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_authors_importance_parameters_stay_frozen(impl):
    torch.manual_seed(1)
    asa = ASA(T=4, channels=6, behaviour="authors", impl=impl)
    start = {k: v.detach().clone() for k, v in asa.named_parameters()}
    opt = torch.optim.Adam(asa.parameters(), lr=0.1, weight_decay=1e-2)
    for step in range(3):
        x = _x(B=3, C=6, seed=10 + step).requires_grad_()
        opt.zero_grad()
        asa(x).square().sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        opt.step()
    for k, v in asa.named_parameters():
        moved = not torch.equal(v, start[k])
        # alpha, beta and the temporal FC never get a gradient (grad None, so Adam's weight
        # decay does not touch them either); the two spatial convs learn
        assert moved == k.startswith("conv_"), k
        assert (v.grad is None) == (not k.startswith("conv_")), k


def test_authors_fused_matches_reference():
    torch.manual_seed(2)
    asa = ASA(T=8, channels=6, lam=0.25, behaviour="authors").double()
    x = (torch.randn(8, 3, 6, 4, 5, dtype=torch.float64) + 2).requires_grad_()
    gy = torch.randn_like(x)
    res = _both_impls(asa, x, gy)
    (y0, gx0, g0), (y1, gx1, g1) = res["reference"], res["fused"]
    for a, b in ((y0, y1), (gx0, gx1), (g0["conv_important.weight"],
                                        g1["conv_important.weight"])):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


def test_authors_variant_in_models_and_checkpoints(tmp_path):
    net = ls.models.create("lif_snn_a", T=4, width=4, attention="asa_authors", lam=0.25,
                           input_size=(16, 16))
    asas = [m for m in net.modules() if isinstance(m, ASA)]
    assert len(asas) == 3 and all(m.behaviour == "authors" and m.lam == 0.25 for m in asas)
    ls.save(net, tmp_path / "a.lsnn")
    back = ls.load(tmp_path / "a.lsnn")
    assert all(m.behaviour == "authors" for m in back.modules() if isinstance(m, ASA))
    with pytest.raises(ValueError, match="asa_authors"):
        ls.models.create("lif_snn_a", T=4, width=4, attention="asa_author")
    with pytest.raises(ValueError, match="behaviour"):
        ASA(T=4, channels=4, behaviour="paper")
