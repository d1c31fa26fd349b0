#!/usr/bin/env python3
"""Golden values for the kdloss tests, computed by an independent tool: PyTorch in float64.

Run with Debian's interpreter and packages (apt install python3-torch):
    /usr/bin/python3 tests/golden/generate.py > tests/golden/golden.txt
CI never runs this script; it only reads the committed golden.txt.

Format, one block per case:
    case <name> <loss> <N> <V> <tau> <scale_by_t2 0|1> <Sum|BatchMean> <has_weights 0|1> <grad 0|1>
    S <N*V student logits>        row-major; inputs are float32 values, written exactly
    T <N*V teacher logits>
    W <N weights>                 only when has_weights
    P <parameters>                only for losses with parameters (beta, alpha, alpha beta, smoothing)
    Y <N labels>                  for the losses with labels (-100 = ignored)
    B1 <N*V>, B2 <N*V>            only for DeltaKL: student base and teacher base logits
    value <loss>
    grad <N*V dL/dS>              only when grad is 1
    end
Losses (p = softmax(T/tau), q = softmax(S/tau), true divergences, each computed here from its
definition with torch ops and differentiated by torch.autograd): ForwardKL = KL(p||q), ReverseKL =
KL(q||p), JensenShannon(beta), SkewKL(alpha), SkewReverseKL(alpha), TotalVariation, Hellinger,
Pearson, Neyman, Jeffreys, Amari(alpha), AlphaBeta(alpha, beta), CrossEntropy(smoothing) against
labels (torch.nn.functional.cross_entropy); LogSoftmax = log_softmax(S/tau) row-wise (its "grad"
line holds the output). The adaptive and seed-paper losses, transcribed from their reference code
(torch.sort for AKL's head, the papers' formulas for the rest) and differentiated by autograd with
the reference's detached quantities detached: AdaptiveKL(mu), Taid(lambda), Decoupled(alpha, beta)
(with the T^2 factor), NormalizedKD(gamma), SoftTargetCE(alpha) (T holds the soft-target
probability matrix P), DeltaKL(alpha), SymmetricKL(w_f, w_r).
"""
import math
import sys

import torch

torch.set_default_dtype(torch.float64)
INF = float("inf")


def fmt(x):
    x = float(x)
    if x == INF:
        return "inf"
    if x == -INF:
        return "-inf"
    return repr(x)


def f32(t):
    """Round to float32 so the C++ float path reads exactly the same inputs."""
    return t.to(torch.float32).to(torch.float64)


def kl_terms(la, lb):
    """Elementwise a (log a - log b) with 0 log 0 = 0 and a > 0 = b giving +inf (torch.xlogy-style)."""
    a = la.exp()
    diff = torch.where(torch.isinf(la) & (la < 0), torch.zeros_like(la), la - lb)
    return torch.where(a > 0, a * diff, torch.zeros_like(a))


def divergence(loss, s, t, tau):
    lq = torch.log_softmax(s / tau, dim=-1)
    lp = torch.log_softmax(t / tau, dim=-1)
    if loss == "ForwardKL":
        # torch's own KL: kl_div(input=log q, target=log p, log_target=True) = sum p (log p - log q)
        return torch.nn.functional.kl_div(lq, lp, reduction="none", log_target=True).sum(-1)
    return torch.nn.functional.kl_div(lp, lq, reduction="none", log_target=True).sum(-1)


def masked_divergence(loss, s, t, tau):
    lq = torch.log_softmax(s / tau, dim=-1)
    lp = torch.log_softmax(t / tau, dim=-1)
    return (kl_terms(lp, lq) if loss == "ForwardKL" else kl_terms(lq, lp)).sum(-1)


def reduce(rows, w, tau, t2, reduction):
    total = (rows * w).sum()
    if t2:
        total = total * tau * tau
    if reduction == "BatchMean":
        total = total / w.sum()
    return total


def emit(name, loss, s, t, tau, t2, reduction, w, value, grad, params=None, labels=None, bases=None):
    n, v = s.shape
    has_w = w is not None
    print(f"case {name} {loss} {n} {v} {fmt(tau)} {int(t2)} {reduction} {int(has_w)} {int(grad is not None)}")
    print("S " + " ".join(fmt(x) for x in s.flatten()))
    print("T " + " ".join(fmt(x) for x in t.flatten()))
    if has_w:
        print("W " + " ".join(fmt(x) for x in w))
    if params is not None:
        print("P " + " ".join(fmt(x) for x in params))
    if labels is not None:
        print("Y " + " ".join(str(int(x)) for x in labels))
    if bases is not None:
        print("B1 " + " ".join(fmt(x) for x in bases[0].flatten()))
        print("B2 " + " ".join(fmt(x) for x in bases[1].flatten()))
    print("value " + fmt(value))
    if grad is not None:
        print("grad " + " ".join(fmt(x) for x in grad.flatten()))
    print("end")


def autograd_case(name, loss, n, v, tau, t2, reduction, weights, scale, gen):
    s = f32(torch.randn(n, v, generator=gen) * scale)
    t = f32(torch.randn(n, v, generator=gen) * scale)
    w = None if weights is None else f32(torch.tensor(weights))
    ww = torch.ones(n) if w is None else w
    s_req = s.clone().requires_grad_(True)
    value = reduce(divergence(loss, s_req, t, tau), ww, tau, t2, reduction)
    value.backward()
    emit(name, loss, s, t, tau, t2, reduction, w, value.item(), s_req.grad)


def masked_case(name, loss, gen):
    """-inf entries: both sides masked, and a row where only one side is -inf (value +inf).
    The gradient comes from torch's softmax via the analytic form (autograd through -inf is NaN)."""
    n, v, tau = 3, 6, 1.0
    s = f32(torch.randn(n, v, generator=gen) * 2)
    t = f32(torch.randn(n, v, generator=gen) * 2)
    s[:, 2] = -INF
    t[:, 2] = -INF  # masked on both sides
    if loss == "ForwardKL":
        s[1, 4] = -INF  # teacher mass, no student mass: KL(p||q) = +inf, gradient finite
    rows = masked_divergence(loss, s, t, tau)
    value = rows.sum() / n
    q = torch.softmax(s / tau, dim=-1)
    p = torch.softmax(t / tau, dim=-1)
    grad = None
    if loss == "ForwardKL":
        grad = (q - p) / tau / n
    emit(name, loss, s, t, tau, False, "BatchMean", None, value.item(), grad)


def family_rows(loss, params, s, t, tau):
    """Per-row divergences of the family, from their definitions in torch."""
    lq = torch.log_softmax(s / tau, dim=-1)
    lp = torch.log_softmax(t / tau, dim=-1)
    p, q = lp.exp(), lq.exp()
    if loss == "JensenShannon":
        (beta,) = params
        lm = torch.logsumexp(torch.stack([lp + math.log(beta), lq + math.log(1 - beta)]), dim=0)
        return beta * (p * (lp - lm)).sum(-1) + (1 - beta) * (q * (lq - lm)).sum(-1)
    if loss == "SkewKL":
        (alpha,) = params
        lm = torch.logsumexp(torch.stack([lp + math.log(alpha), lq + math.log(1 - alpha)]), dim=0)
        return (p * (lp - lm)).sum(-1)
    if loss == "SkewReverseKL":
        (alpha,) = params
        lm = torch.logsumexp(torch.stack([lp + math.log(1 - alpha), lq + math.log(alpha)]), dim=0)
        return (q * (lq - lm)).sum(-1)
    if loss == "TotalVariation":
        return 0.5 * (p - q).abs().sum(-1)
    if loss == "Hellinger":
        return 0.5 * ((p.sqrt() - q.sqrt()) ** 2).sum(-1)
    if loss == "Pearson":
        return ((p - q) ** 2 / q).sum(-1)
    if loss == "Neyman":
        return ((p - q) ** 2 / p).sum(-1)
    if loss == "Jeffreys":
        return ((p - q) * (lp - lq)).sum(-1)
    if loss in ("Amari", "AlphaBeta"):
        a, b = (params[0], 1 - params[0]) if loss == "Amari" else params
        lam = a + b
        if a == 0 and b == 0:
            return 0.5 * ((lq - lp) ** 2).sum(-1)
        if a == 0:
            qb, pb = (b * lq).exp(), (b * lp).exp()
            return (qb * b * (lq - lp) - qb + pb).sum(-1) / b ** 2
        if b == 0:
            pa, qa = (a * lp).exp(), (a * lq).exp()
            return (pa * a * (lp - lq) - pa + qa).sum(-1) / a ** 2
        if lam == 0:
            return (a * (lq - lp) + (a * (lp - lq)).exp() - 1).sum(-1) / a ** 2
        m = (a * lp + b * lq).exp()
        return -(m - a / lam * (lam * lp).exp() - b / lam * (lam * lq).exp()).sum(-1) / (a * b)
    raise ValueError(loss)


def family_case(name, loss, params, n, v, tau, reduction, scale, gen):
    s = f32(torch.randn(n, v, generator=gen) * scale)
    t = f32(torch.randn(n, v, generator=gen) * scale)
    s_req = s.clone().requires_grad_(True)
    value = reduce(family_rows(loss, params, s_req, t, tau), torch.ones(n), tau, False, reduction)
    value.backward()
    emit(name, loss, s, t, tau, False, reduction, None, value.item(), s_req.grad, params=params)


def cross_entropy_case(name, n, v, tau, smoothing, gen):
    s = f32(torch.randn(n, v, generator=gen) * 3)
    y = torch.randint(0, v, (n,), generator=gen)
    y[1] = -100
    s_req = s.clone().requires_grad_(True)
    value = torch.nn.functional.cross_entropy(s_req / tau, y, ignore_index=-100, label_smoothing=smoothing,
                                              reduction="mean")
    value.backward()
    emit(name, "CrossEntropy", s, s, tau, False, "BatchMean", None, value.item(), s_req.grad,
         params=[smoothing], labels=y.tolist())


def akl_rows(s, t, tau, mu):
    """wutaiqiang/LLM_KD_AKL get_ratio with a stable descending sort (ties: lower index first) and
    the weights detached; both KLs true divergences."""
    lq = torch.log_softmax(s / tau, dim=-1)
    lp = torch.log_softmax(t / tau, dim=-1)
    p, q = lp.exp(), lq.exp()
    with torch.no_grad():
        order = torch.sort(t, dim=-1, descending=True, stable=True).indices
        ps = torch.gather(p, -1, order)
        qs = torch.gather(q.detach(), -1, order)
        err = (ps - qs).abs()
        cum = torch.cumsum(ps, dim=-1)
        tail = cum > mu
        tail[:, 0] = False
        gh = (err * (~tail)).sum(-1)
        gt = (err * tail).sum(-1)
        wh = torch.where(gh + gt > 0, gh / (gh + gt), torch.full_like(gh, 0.5))
    fkl = (p * (lp - lq)).sum(-1)
    rkl = (q * (lq - lp)).sum(-1)
    return wh * fkl + (1 - wh) * rkl


def taid_rows(s, t, tau, lam):
    z = (1 - lam) * s.detach() + lam * t
    lp = torch.log_softmax(z / tau, dim=-1)
    lq = torch.log_softmax(s / tau, dim=-1)
    return (lp.exp() * (lp - lq)).sum(-1)


def dkd_rows(s, t, tau, y, alpha, beta):
    """megvii-research/mdistiller DKD.py, with the label dropped exactly from the non-target softmax."""
    mask = torch.nn.functional.one_hot(y, s.shape[-1]).bool()
    p = torch.softmax(t / tau, dim=-1)
    q = torch.softmax(s / tau, dim=-1)
    py = (p * mask).sum(-1)
    qy = (q * mask).sum(-1)
    bp = torch.stack([py, 1 - py], -1)
    bq = torch.stack([qy, 1 - qy], -1)
    tckd = (bp * (bp.log() - bq.log())).sum(-1)
    lph = torch.log_softmax((t / tau).masked_fill(mask, -INF), dim=-1)
    lqh = torch.log_softmax((s / tau).masked_fill(mask, -INF), dim=-1)
    nckd = torch.where(mask, torch.zeros_like(lph), lph.exp() * (lph - lqh)).sum(-1)
    return (alpha * tckd + beta * nckd) * tau * tau


def nkd_rows(s, t, lam, y, gamma):
    """yzd-v/cls_KD nkd.py (fixed mask): -p_y log q_y - gamma lam^2 sum_{i != y} p^ log q^."""
    mask = torch.nn.functional.one_hot(y, s.shape[-1]).bool()
    py = (torch.softmax(t, dim=-1) * mask).sum(-1).detach()
    lqy = (torch.log_softmax(s, dim=-1) * mask).sum(-1)
    lph = torch.log_softmax((t / lam).masked_fill(mask, -INF), dim=-1)
    lqh = torch.log_softmax((s / lam).masked_fill(mask, -INF), dim=-1)
    non = torch.where(mask, torch.zeros_like(lph), lph.exp() * lqh).sum(-1)
    return -py * lqy - gamma * lam * lam * non


def labeled_case(name, loss, params, n, v, tau, t2, gen):
    s = f32(torch.randn(n, v, generator=gen) * 3)
    t = f32(torch.randn(n, v, generator=gen) * 3)
    y = torch.randint(0, v, (n,), generator=gen)
    y[1] = -100
    valid = y != -100
    yv = torch.where(valid, y, torch.zeros_like(y))
    s_req = s.clone().requires_grad_(True)
    if loss == "Decoupled":
        rows = dkd_rows(s_req, t, tau, yv, *params)
    else:
        rows = nkd_rows(s_req, t, tau, yv, *params)
    value = (rows * valid).sum() / valid.sum()
    value.backward()
    emit(name, loss, s, t, tau, t2, "BatchMean", None, value.item(), s_req.grad, params=params, labels=y.tolist())


def soft_target_case(name, n, v, tau, alpha, gen):
    s = f32(torch.randn(n, v, generator=gen) * 3)
    # float64 probability rows summing to 1 (PS-KD's gradient q - y~ assumes it); the float test
    # reads them rounded, within its error bound.
    pmat = torch.softmax(torch.randn(n, v, generator=gen) * 2, dim=-1)
    y = torch.randint(0, v, (n,), generator=gen)
    y[1] = -100
    valid = y != -100
    yv = torch.where(valid, y, torch.zeros_like(y))
    target = (1 - alpha) * torch.nn.functional.one_hot(yv, v) + alpha * pmat
    s_req = s.clone().requires_grad_(True)
    rows = -(target * torch.log_softmax(s_req / tau, dim=-1)).sum(-1)
    value = (rows * valid).sum() / valid.sum()
    value.backward()
    emit(name, "SoftTargetCE", s, pmat, tau, False, "BatchMean", None, value.item(), s_req.grad, params=[alpha],
         labels=y.tolist())


def delta_case(name, n, v, tau, alpha, gen):
    s, t, sb, tb = (f32(torch.randn(n, v, generator=gen) * 3) for _ in range(4))
    s_req = s.clone().requires_grad_(True)
    lp = torch.log_softmax((t + alpha * (sb - tb)) / tau, dim=-1)
    lq = torch.log_softmax(s_req / tau, dim=-1)
    value = (lp.exp() * (lp - lq)).sum(-1).mean()
    value.backward()
    emit(name, "DeltaKL", s, t, tau, False, "BatchMean", None, value.item(), s_req.grad, params=[alpha],
         bases=(sb, tb))


def pair_case(name, loss, params, n, v, tau, gen, scale=3.0):
    s = f32(torch.randn(n, v, generator=gen) * scale)
    t = f32(torch.randn(n, v, generator=gen) * scale)
    s_req = s.clone().requires_grad_(True)
    if loss == "AdaptiveKL":
        rows = akl_rows(s_req, t, tau, params[0])
    elif loss == "Taid":
        rows = taid_rows(s_req, t, tau, params[0])
    else:
        lp = torch.log_softmax(t / tau, dim=-1)
        lq = torch.log_softmax(s_req / tau, dim=-1)
        rows = params[0] * (lp.exp() * (lp - lq)).sum(-1) + params[1] * (lq.exp() * (lq - lp)).sum(-1)
    value = rows.mean()
    value.backward()
    emit(name, loss, s, t, tau, False, "BatchMean", None, value.item(), s_req.grad, params=params)


def main():
    gen = torch.Generator().manual_seed(20261122)
    print("# kdloss golden values: PyTorch " + torch.__version__ + ", float64. Generated by tests/golden/generate.py")
    for loss in ("ForwardKL", "ReverseKL"):
        tag = "fkl" if loss == "ForwardKL" else "rkl"
        autograd_case(f"{tag}_basic", loss, 3, 7, 1.0, False, "BatchMean", None, 2.0, gen)
        autograd_case(f"{tag}_temperature_t2", loss, 2, 11, 2.0, True, "Sum", None, 3.0, gen)
        autograd_case(f"{tag}_weights", loss, 4, 5, 0.5, False, "BatchMean", [1.0, 0.0, 2.0, 0.5], 2.0, gen)
        autograd_case(f"{tag}_wide", loss, 2, 129, 1.5, False, "BatchMean", None, 4.0, gen)
        autograd_case(f"{tag}_confident", loss, 2, 33, 1.0, False, "Sum", None, 12.0, gen)
        masked_case(f"{tag}_masked", loss, gen)
    family = [("js", "JensenShannon", [0.5]), ("js01", "JensenShannon", [0.1]), ("skl", "SkewKL", [0.1]),
              ("srkl", "SkewReverseKL", [0.1]), ("tvd", "TotalVariation", []), ("hellinger", "Hellinger", []),
              ("pearson", "Pearson", []), ("neyman", "Neyman", []), ("jeffreys", "Jeffreys", []),
              ("amari", "Amari", [0.3]), ("ab", "AlphaBeta", [0.2, 0.7]), ("ab_neg", "AlphaBeta", [1.5, -0.4]),
              ("ab_beta0", "AlphaBeta", [0.6, 0.0]), ("ab_alpha0", "AlphaBeta", [0.0, 0.8]),
              ("ab_sum0", "AlphaBeta", [0.5, -0.5]), ("ab_zero", "AlphaBeta", [0.0, 0.0])]
    for tag, loss, params in family:
        family_case(f"{tag}_basic", loss, params, 3, 7, 1.0, "BatchMean", 2.0, gen)
        family_case(f"{tag}_wide", loss, params, 2, 31, 1.5, "Sum", 3.0, gen)
    cross_entropy_case("ce_basic", 4, 11, 1.0, 0.0, gen)
    cross_entropy_case("ce_smoothing", 4, 53, 2.0, 0.1, gen)
    pair_case("akl_basic", "AdaptiveKL", [0.5], 3, 40, 1.0, gen)
    pair_case("akl_mu02_tau2", "AdaptiveKL", [0.2], 3, 301, 2.0, gen, scale=5.0)
    pair_case("taid_basic", "Taid", [0.4], 3, 40, 1.0, gen)
    pair_case("taid_lam09", "Taid", [0.9], 2, 129, 1.5, gen)
    pair_case("symkl_half", "SymmetricKL", [0.5, 0.5], 3, 40, 1.0, gen)
    pair_case("symkl_distillm", "SymmetricKL", [0.1, 0.9], 2, 77, 2.0, gen)
    labeled_case("dkd_default", "Decoupled", [1.0, 8.0], 4, 33, 4.0, True, gen)
    labeled_case("dkd_t1", "Decoupled", [0.5, 2.0], 4, 17, 1.0, True, gen)
    labeled_case("nkd_default", "NormalizedKD", [1.5], 4, 33, 1.0, False, gen)
    labeled_case("nkd_cifar", "NormalizedKD", [3.5], 4, 17, 3.0, False, gen)
    soft_target_case("pskd_basic", 4, 29, 1.0, 0.4, gen)
    delta_case("delta_basic", 3, 31, 1.0, 1.0, gen)
    delta_case("delta_half_tau2", 2, 45, 2.0, 0.5, gen)
    x = f32(torch.randn(2, 9, generator=gen) * 3)
    emit("log_softmax", "LogSoftmax", x, x, 0.7, False, "Sum", None, 0.0,
         torch.log_softmax(x / 0.7, dim=-1))


if __name__ == "__main__":
    sys.exit(main())
