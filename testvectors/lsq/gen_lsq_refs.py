#!/usr/bin/env python3
"""Generate the LSQ reference vectors in this directory by running the seed's
PyTorch code verbatim (LsqQuanAct, LsqQuanWeight, copied unchanged from
shared/seed/000_fdd58fb18bd77bea.txt) and a torch implementation of the LSQ
paper's variant (Esser et al., ICLR 2020) written in the same style.

Usage (from the repository root):
    python3 testvectors/lsq/gen_lsq_refs.py            # rewrite the JSON files
    python3 testvectors/lsq/gen_lsq_refs.py --check    # regenerate in memory, compare
                                                       # (exit 1 on any difference)

Deterministic: fixed torch/numpy seeds, CPU, float32, one thread.
Every float is stored as the 8-hex-digit bit pattern of its float32.
See README.md in this directory for the format.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch as t

t.set_num_threads(1)
t.set_flush_denormal(False)

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------
# The seed's code, VERBATIM (shared/seed/000_fdd58fb18bd77bea.txt).
# ---------------------------------------------------------------------------
class LsqQuanAct(t.autograd.Function):
    @staticmethod
    def forward(ctx, x, s, nbit):
        nlevel = 2 ** (nbit - 1) - 1
        x_scale = x / s
        x_bin = x_scale.clamp(-nlevel, nlevel).round()
        y = x_bin * s
        ctx.save_for_backward(x, s)
        ctx.nLevel = nlevel
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, s = ctx.saved_tensors
        nlevel = ctx.nLevel
        x_scale = x / s
        x_isclip = abs(x_scale).lt(nlevel)
        x_bin = x_scale.clamp(-nlevel, nlevel).round()

        grad_x = grad_s = None
        if ctx.needs_input_grad[0]:  # dy/dx
            grad_x = t.where(x_isclip, grad_y, t.zeros_like(grad_y))
        if ctx.needs_input_grad[1]:  # dy/ds
            grad_s = t.sum(t.where(x_isclip, x_scale.round() - x_scale, x_bin) * grad_y).unsqueeze(0)
        return grad_x, grad_s, None


class LsqQuanWeight(t.autograd.Function):
    @staticmethod
    def forward(ctx, x, s, nbit):
        nlevel = 2 ** (nbit - 1) - 1
        x_scale = x / s
        x_bin = x_scale.clamp(-nlevel, nlevel).round()
        y = x_bin * s
        ctx.save_for_backward(x, s)
        ctx.nLevel = nlevel
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, s = ctx.saved_tensors
        nlevel = ctx.nLevel
        x_scale = x / s
        x_isclip = abs(x_scale).lt(nlevel)
        x_clip_round = x_scale.clamp(-nlevel, nlevel).round()

        grad_x = grad_s = None
        if ctx.needs_input_grad[0]:  # dy/dx
            grad_x = grad_y
        if ctx.needs_input_grad[1]:  # dy/ds
            grad_s = t.sum(t.where(x_isclip, x_scale.round() - x_scale, x_clip_round) * grad_y).unsqueeze(0)
        return grad_x, grad_s, None


# ---------------------------------------------------------------------------
# The paper's variant, in the seed's style (not from the seed).
#   code = round(clamp(x/s, -Qn, Qp)), y = code*s;
#   dy/dx = 1 if -Qn < x/s < Qp else 0;
#   dy/ds = round(x/s) - x/s inside, -Qn below, Qp above (= the clamped code);
#   grad_s scaled by g = 1/sqrt(N*Qp), N = x.numel(), g rounded to float32.
# ---------------------------------------------------------------------------
def paper_range(kind, nbit):
    if kind == "act":
        return 0, 2**nbit - 1
    return 2 ** (nbit - 1), 2 ** (nbit - 1) - 1


class LsqPaper(t.autograd.Function):
    @staticmethod
    def forward(ctx, x, s, qn, qp):
        x_scale = x / s
        x_bin = x_scale.clamp(-qn, qp).round()
        y = x_bin * s
        ctx.save_for_backward(x, s)
        ctx.q = (qn, qp)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, s = ctx.saved_tensors
        qn, qp = ctx.q
        x_scale = x / s
        inside = (x_scale > -qn) & (x_scale < qp)
        x_bin = x_scale.clamp(-qn, qp).round()
        g = t.tensor(1.0 / math.sqrt(x.numel() * qp), dtype=t.float32)
        grad_x = t.where(inside, grad_y, t.zeros_like(grad_y))
        grad_s = (t.sum(t.where(inside, x_scale.round() - x_scale, x_bin) * grad_y) * g).unsqueeze(0)
        return grad_x, grad_s, None, None


def paper_autograd_crosscheck(x, s, qn, qp, grad_y):
    """The common PyTorch-port formulation (grad_scale + round_pass + clamp
    autograd). Not bit-exact (s is perturbed by the grad_scale trick and
    clamp's gradient is inclusive at the bounds); used only as a sanity check
    of the formulas above on inputs away from the bounds."""
    g = 1.0 / math.sqrt(x.numel() * qp)
    xx = x.detach().clone().requires_grad_(True)
    ss = s.detach().clone().requires_grad_(True)
    s_scale = (ss - ss * g).detach() + ss * g
    v = t.clamp(xx / s_scale, -qn, qp)
    v = (v.round() - v).detach() + v
    y = v * s_scale
    y.backward(grad_y)
    return xx.grad, ss.grad


# ---------------------------------------------------------------------------
def f32(a):
    return np.asarray(a, dtype=np.float32)


def hexes(a):
    return ["%08x" % int(u) for u in f32(a).reshape(-1).view(np.uint32)]


def code_range(kind, variant, nbit):
    if variant == "seed":
        n = 2 ** (nbit - 1) - 1
        return -n, n
    qn, qp = paper_range(kind, nbit)
    return -qn, qp


def run_case(kind, variant, nbit, step, x, grad_y):
    s = t.tensor([step], dtype=t.float32, requires_grad=True)
    xt = t.tensor(f32(x), requires_grad=True)
    gy = t.tensor(f32(grad_y))
    if variant == "seed":
        fn = LsqQuanAct if kind == "act" else LsqQuanWeight
        y = fn.apply(xt, s, nbit)
        lo, hi = -(2 ** (nbit - 1) - 1), 2 ** (nbit - 1) - 1
    else:
        qn, qp = paper_range(kind, nbit)
        y = LsqPaper.apply(xt, s, qn, qp)
        lo, hi = -qn, qp
    y.backward(gy)
    with t.no_grad():
        # The integer code is the seed's intermediate x_bin (same expression).
        x_bin = (xt / s).clamp(lo, hi).round()
        assert t.isfinite(x_bin).all()
        code = x_bin.to(t.int64)
        # Exact (math.fsum) sum of torch's float32 terms, for diagnosis only.
        xs = xt / s
        inside = (xs > lo) & (xs < hi)
        terms = (t.where(inside, xs.round() - xs, x_bin) * gy).numpy().astype(np.float64)
        exact = math.fsum(terms.tolist())
        abs_sum = math.fsum(np.abs(terms).tolist())
        if variant == "paper":
            g = np.float32(1.0 / math.sqrt(len(x) * hi))
            exact_f32 = np.float32(np.float32(exact) * g)
            abs_sum = abs_sum * float(g)
        else:
            exact_f32 = np.float32(exact)
    grad_s = np.float32(s.grad.numpy()[0])
    if exact_f32 != 0 or grad_s != 0:
        rel = abs(float(grad_s) - float(exact_f32)) / max(abs(float(exact_f32)), 1e-45)
    else:
        rel = 0.0
    return {
        "y": hexes(y.detach().numpy()),
        "code": [int(c) for c in code.numpy()],
        "grad_x": hexes(xt.grad.numpy()),
        "grad_s": hexes([grad_s])[0],
        "grad_s_exact_sum": hexes([exact_f32])[0],
        "grad_s_abs_terms": hexes([abs_sum])[0],
    }, rel


def tie_inputs(lo, hi, step, rng, dyadic):
    """x on every half step and integer step of the range and a margin, the
    clip boundaries and their f32 neighbours, signed zeros, tiny and huge
    values, ±inf. For nbit 16 the interior is subsampled."""
    s = np.float32(step)
    if hi - lo <= 300:
        ks = list(range(lo - 3, hi + 4))
    else:
        ks = sorted(set(list(range(lo - 3, lo + 40)) + list(range(-40, 41)) + list(range(hi - 40, hi + 4))
                        + [int(k) for k in rng.integers(lo, hi, 60)]))
    xs = []
    for k in ks:
        xs.append(np.float32(k) * s)               # integer steps
        xs.append(np.float32(k + 0.5) * s)         # half steps (ties)
    for b in (lo, hi):
        xb = np.float32(b) * s
        xs += [xb, np.nextafter(xb, np.float32(np.inf)), np.nextafter(xb, np.float32(-np.inf))]
        xs.append(np.float32(b + 0.5) * s)
        xs.append(np.float32(b - 0.5) * s)
    xs += [0.0, -0.0, 0.3 * s, -0.3 * s, 0.5 * s, -0.5 * s, 0.7 * s, -0.7 * s,
           1e-45, -1e-45, 1e38, -1e38, 3.4028235e38, -3.4028235e38, np.inf, -np.inf]
    return f32(xs)


def random_grad_y(rng, n):
    gy = f32(rng.standard_normal(n))
    gy[rng.random(n) < 0.05] = 0.0
    gy[rng.random(n) < 0.05] = -0.0
    return gy


def random_inputs(rng, lo, hi, step, n):
    # Spread over the whole range and 20% beyond, with some exact ties mixed in.
    span = max(hi - lo, 1)
    centre = (hi + lo) / 2.0
    v = rng.standard_normal(n) * (span / 3.0) + centre
    x = f32(v * step)
    tie = rng.random(n) < 0.2
    ks = rng.integers(lo - 1, hi + 1, n)
    x[tie] = (f32(ks + 0.5) * np.float32(step))[tie]
    return x


NBITS = [2, 3, 4, 5, 6, 7, 8, 16]
KINDS = ["act", "weight"]
VARIANTS = ["seed", "paper"]


def build():
    rng = np.random.default_rng(20190525)
    files = {}
    worst = 0.0
    for variant in VARIANTS:
        for kind in KINDS:
            cases = []
            for nbit in NBITS:
                lo, hi = code_range(kind, variant, nbit)
                plan = []
                # Ties on a dyadic step (x/s exactly k+0.5) and on a non-dyadic step.
                for step in (0.25, 0.1):
                    x = tie_inputs(lo, hi, step, rng, dyadic=(step == 0.25))
                    plan.append(("ties_step_%g" % step, step, x, random_grad_y(rng, len(x))))
                # Random normal inputs over several step regimes.
                for name, step in (("random_step_0.0371", 0.0371), ("tiny_step_1e-30", 1e-30),
                                   ("subnormal_step_1e-40", 1e-40), ("huge_step_1e30", 1e30)):
                    x = random_inputs(rng, lo, hi, float(np.float32(step)), 48)
                    plan.append((name, step, x, random_grad_y(rng, len(x))))
                # grad_y = ones (what `bitmac lsq` uses when grad_y is absent).
                x = random_inputs(rng, lo, hi, 0.5, 24)
                plan.append(("ones_grad_step_0.5", 0.5, x, f32(np.ones(len(x)))))
                for name, step, x, gy in plan:
                    out, rel = run_case(kind, variant, nbit, float(np.float32(step)), x, gy)
                    worst = max(worst, rel)
                    case = {
                        "name": "%s_%s_nbit%d_%s" % (variant, kind, nbit, name),
                        "kind": kind, "variant": variant, "nbit": nbit,
                        "step": hexes([step])[0],
                        "x": hexes(x), "grad_y": hexes(gy),
                    }
                    case.update(out)
                    cases.append(case)
                    if variant == "paper" and name.startswith("random"):
                        crosscheck(kind, nbit, step, x, gy, out)
            files["%s_%s.json" % (variant, kind)] = cases
    files["init_step.json"] = build_init(rng)
    return files, worst


def crosscheck(kind, nbit, step, x, gy, out):
    qn, qp = paper_range(kind, nbit)
    s = t.tensor([np.float32(step)], dtype=t.float32)
    xs = f32(x) / np.float32(step)
    if np.any(np.isclose(xs, -qn, rtol=1e-5, atol=1e-6)) or np.any(np.isclose(xs, qp, rtol=1e-5, atol=1e-6)):
        return
    gx, gs = paper_autograd_crosscheck(t.tensor(f32(x)), s, qn, qp, t.tensor(gy))
    ours_gx = np.array([int(h, 16) for h in out["grad_x"]], dtype=np.uint32).view(np.float32)
    assert np.allclose(gx.numpy(), ours_gx, rtol=1e-5, atol=0), "paper grad_x disagrees with the autograd formulation"
    ours_gs = np.uint32(int(out["grad_s"], 16)).view(np.float32)
    ref = float(gs.numpy()[0])
    assert abs(ref - float(ours_gs)) <= 1e-3 * max(abs(ref), 1e-30), (ref, ours_gs)


def build_init(rng):
    """s0 = 2*mean(|v|)/sqrt(Qp) in torch float32 for every kind/variant/nbit."""
    cases = []
    for variant in VARIANTS:
        for kind in KINDS:
            for nbit in NBITS:
                _, qp = code_range(kind, variant, nbit)
                v = f32(rng.standard_normal(200) * 0.05)
                if kind == "act":
                    v = np.maximum(v, np.float32(0))
                vt = t.tensor(v)
                s0 = 2 * vt.abs().mean() / math.sqrt(qp)
                cases.append({"name": "init_%s_%s_nbit%d" % (variant, kind, nbit), "kind": kind,
                              "variant": variant, "nbit": nbit, "v": hexes(v),
                              "step": hexes([s0.numpy()])[0]})
    return cases


def render(cases):
    doc = {
        "generator": "testvectors/lsq/gen_lsq_refs.py",
        "torch_version": t.__version__,
        "numpy_version": np.__version__,
        "torch_cpu_capability": t.backends.cpu.get_cpu_capability(),
        "cases": cases,
    }
    # One case per line: diffs stay readable and files stay small.
    lines = ["{"]
    for key in ("generator", "torch_version", "numpy_version", "torch_cpu_capability"):
        lines.append("  %s: %s," % (json.dumps(key), json.dumps(doc[key])))
    lines.append('  "cases": [')
    for i, c in enumerate(cases):
        lines.append("    " + json.dumps(c, separators=(",", ":")) + ("," if i + 1 < len(cases) else ""))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def h2f(h):
    return float(np.uint32(int(h, 16)).view(np.float32))


def check_file(path, cases):
    """Compare regenerated cases with the committed file: every field exactly,
    except torch's grad_s (its float32 summation order depends on the CPU's
    SIMD width), which must agree within (n-1)*2^-24*sum|terms| + 1e-6 rel."""
    with open(path) as f:
        committed = json.load(f)
    old = committed["cases"]
    if len(old) != len(cases):
        print("DIFFERS: %s: %d cases committed, %d regenerated" % (path, len(old), len(cases)))
        return 1
    bad = 0
    for a, b in zip(old, cases):
        for key in sorted(set(a) | set(b)):
            if a.get(key) == b.get(key):
                continue
            if key == "grad_s" and "grad_s_abs_terms" in a:
                d = abs(h2f(a[key]) - h2f(b[key]))
                tol = (len(a["x"]) - 1) * 2.0**-24 * h2f(a["grad_s_abs_terms"]) + 1e-6 * abs(h2f(a[key]))
                if d <= tol:
                    print("note: %s %s: torch grad_s differs in the last bits (%g <= %g)" % (path, a["name"], d, tol))
                    continue
            print("DIFFERS: %s case %s field %s" % (path, a.get("name"), key))
            bad += 1
    if committed.get("torch_cpu_capability") != t.backends.cpu.get_cpu_capability():
        print("note: %s was generated with torch CPU capability %s, this machine has %s"
              % (path, committed.get("torch_cpu_capability"), t.backends.cpu.get_cpu_capability()))
    if not bad:
        print("ok: %s" % path)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args()
    files, worst = build()
    bad = 0
    for name, cases in files.items():
        text = render(cases)
        path = os.path.join(HERE, name)
        if args.check:
            bad += check_file(path, cases)
        else:
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, path)
            print("wrote %s (%d cases, %d bytes)" % (path, len(cases), len(text)))
    print("largest relative difference between torch's grad_s and the exact sum: %.3g" % worst)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
