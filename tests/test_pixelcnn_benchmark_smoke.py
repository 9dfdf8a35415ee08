"""Smoke test of benchmarks/pixelcnn_throughput.py on tiny models (5x5 crops of the
digits, 4 channels, one block): the PyTorch twin computes genjax's per-pixel
log-probabilities, log p(x), gradients and sampler log p from the same weights, for the
gated and the plain architecture; the peer check has teeth (a twin whose vertical or
horizontal stack sees its own row / pixel, whose first masked convolution is type "B",
whose weights differ in one entry, or whose sampler fills the pixels in the wrong order
fails it); and ``--quick`` writes a complete JSON record. Speed is not asserted. The
command-line run over both sizes is marked slow, as the other benchmarks' are."""

from __future__ import annotations

import json
import types

import pytest

pytest.importorskip("torch")

from tests.bench_cli import positive_finite, run_quick  # noqa: E402


@pytest.fixture(scope="module")
def pt():
    from benchmarks import pixelcnn_throughput
    return pixelcnn_throughput


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread (on a busy 2-core machine its second OpenMP thread stalls)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gated(pt):
    """(config, 5x5 digits, genjax's reference numbers) of the quick 8x8 gated model."""
    config = pt.size_config("8x8", quick=True)
    data = pt.load_data(config, pt.QUICK_CROP["8x8"])
    return config, data, pt.genjax_reference(config, data)


def _broken_layers(pt):
    """Twin layers with causality bugs: the vertical stack's type-"A" layer keeps output
    rows 1..H (each row then sees its own row), the horizontal stack's type-"A" layer
    columns 1..W (each pixel sees itself)."""
    import torch.nn.functional as F
    layers = pt.torch_layers()

    class SeesOwnRow(layers["VerticalConv"]):
        def forward(self, x):
            if self.mask_type != "A":
                return super().forward(x)
            p = self.p
            return self._conv_forward(F.pad(x, (p, p, p, 0)), self.weight, self.bias)[:, :, 1:]

    class SeesOwnPixel(layers["HorizontalConv"]):
        def forward(self, x):
            if self.mask_type != "A":
                return super().forward(x)
            return self._conv_forward(F.pad(x, (self.p, 0, 0, 0)), self.weight,
                                      self.bias)[:, :, :, 1:]

    return {"VerticalConv": SeesOwnRow}, {"HorizontalConv": SeesOwnPixel}


def test_twin_matches_genjax(pt, gated, one_torch_thread):
    config, data, ref = gated
    r = pt.peer_check(config, data, reference=ref)
    assert r["ok"], r
    # kernel and bias of 2 input convs, 4 block layers, head and out; out_bias
    assert r["num_param_tensors"] == 17
    assert r["mean_log_prob_genjax"] < 0
    assert r["mean_log_prob_torch"] == pytest.approx(r["mean_log_prob_genjax"], rel=1e-5)
    for k in ("pixel_log_probs", "log_prob", "grad", "sampler_log_prob"):
        assert r[f"{k}_max_rel_diff"] < 1e-5, (k, r)


def _one_weight_off(model):
    """One entry of one kernel moved by 1% of the kernel's largest entry."""
    w = model.blocks[0].h_out.weight
    w[0, 0] += 0.01 * w.abs().max()


def _sampler_in_column_order(model, h=5, w=5):
    """The sampler (of h x w images) draws pixel i into (i % h, i // h): column by
    column."""
    import torch

    def sample(self, num, generator=None, *, max_s=None):
        x, log_p = torch.zeros(num, 1, h, w), torch.zeros(num)
        for i in range(h * w):
            lsm = torch.log_softmax(self.logits(x)[:, i], -1)
            idx = torch.multinomial(lsm.exp(), 1, generator=generator)
            x[:, 0, i % h, i // h] = idx[:, 0].float()
            log_p += lsm.gather(-1, idx)[:, 0]
        return x, log_p

    model.sample = types.MethodType(sample, model)


@pytest.mark.parametrize("bug", ["vertical_sees_own_row", "horizontal_sees_own_pixel",
                                 "one_weight_off", "sampler_wrong_order"])
def test_peer_check_detects_a_broken_twin(pt, gated, one_torch_thread, bug):
    config, data, ref = gated
    assert data.shape[1:3] == (5, 5)
    vertical, horizontal = _broken_layers(pt)
    layers = {"vertical_sees_own_row": vertical,
              "horizontal_sees_own_pixel": horizontal}.get(bug)
    tamper = {"one_weight_off": _one_weight_off,
              "sampler_wrong_order": _sampler_in_column_order}.get(bug)
    r = pt.peer_check(config, data, reference=ref, layers=layers, tamper=tamper,
                      num_samples=2)
    assert not r["ok"], r
    if bug == "sampler_wrong_order":                # only the sampler differs
        assert r["grad_max_rel_diff"] < 1e-5
        assert r["sampler_log_prob_max_rel_diff"] > 1e-2
    else:
        assert r["grad_max_rel_diff"] > 1e-3


def test_plain_twin_matches_and_its_first_mask_matters(pt, one_torch_thread):
    config = pt.size_config("8x8", arch="plain", quick=True)
    data = pt.load_data(config, pt.QUICK_CROP["8x8"])
    ref = pt.genjax_reference(config, data)
    good = pt.peer_check(config, data, reference=ref)
    assert good["ok"] and good["num_param_tensors"] == 9, good
    base = pt.torch_layers()["MaskedConv"]

    class AlwaysB(base):                            # the first layer keeps the centre
        def __init__(self, cin, cout, k, mask_type):
            super().__init__(cin, cout, k, "B")

    bad = pt.peer_check(config, data, reference=ref, layers={"MaskedConv": AlwaysB})
    assert not bad["ok"] and bad["pixel_log_probs_max_rel_diff"] > 1e-2, bad


def _check_record(r, sizes):
    assert r["benchmark"] == "pixelcnn_throughput" and r["quick"] is True
    assert r["device"]["cores"] >= 1 and r["device"]["jax_devices"]
    for pkg in ("jax", "flax", "optax", "torch"):
        assert r["versions"][pkg]
    assert set(r["sizes"]) == set(sizes)
    for size in sizes:
        v = r["sizes"][size]
        assert v["example_shape"] == ([5, 5, 1] if size == "8x8" else [6, 6, 1])
        assert v["levels"] == (256 if size == "8x8" else 2)
        t, s = v["train"], v["sampling"]
        for side in ("genjax", "torch"):
            assert positive_finite(t[side]["steps_per_s"]), (size, side)
            assert t[side]["examples_per_s"] == pytest.approx(
                t[side]["steps_per_s"] * v["batch_size"])
            assert positive_finite(s[side]["images_per_s"]), (size, side)
        best = t["best_torch"]
        assert t["ratio_genjax_over_torch"] == pytest.approx(
            t["genjax"]["steps_per_s"] / t[best]["steps_per_s"])
        for rec, unit in ((t, "steps_per_s"), (s, "images_per_s")):
            assert positive_finite(rec["ratio_genjax_over_torch_best_rounds"])
            for side in ("genjax", "torch"):
                assert rec[side][f"{unit}_best_round"] >= rec[side][unit] * (1 - 1e-9)
        assert s["ratio_genjax_over_torch"] == pytest.approx(
            s["genjax"]["images_per_s"] / s[s["best_torch"]]["images_per_s"])
        assert positive_finite(v["genjax_compile"]["lower_and_compile_s"])
        assert positive_finite(v["genjax_compile"]["sampler_s"])
        pc = v["peer_check"]
        assert pc["ok"] is True
        for k in ("pixel_log_probs", "log_prob", "grad", "sampler_log_prob"):
            assert pc[f"{k}_max_rel_diff"] <= pc["tolerances"][k]
    tg = r["targets"]
    assert tg["train_8x8_speedup_vs_torch"] == 1.5
    if "8x8" in sizes:
        assert isinstance(tg["train_8x8_speedup_vs_torch_met"], bool)
        assert positive_finite(tg["train_8x8_ratio"])
    frac = r["other_processes_cpu_fraction"]
    assert frac is None or 0.0 <= frac <= 1.0


def test_quick_run_writes_complete_json(pt, tmp_path, capsys):
    import torch
    before = torch.get_num_threads()
    out = tmp_path / "results" / "pixelcnn.json"          # the folder does not exist yet
    try:
        pt.main(["--quick", "--sizes=8x8", f"--out={out}"])
    finally:
        torch.set_num_threads(before)
    assert "genjax/best torch" in capsys.readouterr().out
    with open(out) as f:
        _check_record(json.load(f), ["8x8"])


@pytest.mark.slow          # the command line over both sizes: about 30 s
def test_quick_cli_writes_complete_json(tmp_path):
    out = tmp_path / "pixelcnn.json"
    stdout, r = run_quick("benchmarks.pixelcnn_throughput", out, timeout=300)
    assert "target: 8x8 training" in stdout
    _check_record(r, ["8x8", "28x28"])


@pytest.mark.parametrize("argv", [["--sizes=9x9"], ["--steps=0"], ["--cpu-devices=3"],
                                  ["--arch=pixelrnn"]])
def test_bad_arguments_are_usage_errors(pt, argv, capsys):
    with pytest.raises(SystemExit) as e:
        pt.parse_args(argv)
    assert e.value.code == 2 and "error:" in capsys.readouterr().err
