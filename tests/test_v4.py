"""MobileNetV4: counts, timm parity (outputs and features), options, attention counting and export."""

from __future__ import annotations

import pytest
import torch

from conftest import random_net
from mobilenets import convert_state_dict, create_model, export, list_models, profile
from mobilenets.models.blocks import MobileMQA, explicit_attention

timm = pytest.importorskip("timm")

# ours, timm's, native resolution, parameters and multiply-adds (timm 1.0.31, the fact sheet's table)
V4 = [
    ("mobilenet_v4_conv_small", "mobilenetv4_conv_small", 224, 3_774_024, 186_005_568),
    ("mobilenet_v4_conv_medium", "mobilenetv4_conv_medium", 256, 9_715_512, 1_080_244_224),
    ("mobilenet_v4_conv_large", "mobilenetv4_conv_large", 384, 32_590_864, 6_376_220_672),
    ("mobilenet_v4_hybrid_medium", "mobilenetv4_hybrid_medium", 256, 11_074_648, 1_271_183_360),
    ("mobilenet_v4_hybrid_large", "mobilenetv4_hybrid_large", 384, 37_764_624, 7_711_877_120),
]


def _random_timm(name: str, **kwargs) -> torch.nn.Module:
    """timm's model as :func:`conftest.random_net` makes it: every branch counts."""
    return random_net(timm.create_model(name, **kwargs)).eval()


@pytest.mark.parametrize("name,timm_name,res,params,macs", V4)
def test_counts_outputs_and_features_equal_timm(name, timm_name, res, params, macs):
    assert name in list_models()
    ours = create_model(name)
    assert ours.pretrained_cfg["input_size"] == (3, res, res)
    prof = profile(ours, res)
    assert (prof.params, prof.macs) == (params, macs)
    ref = _random_timm(timm_name)
    ours.load_state_dict(convert_state_dict(ref.state_dict(), "timm", name))
    ours.eval()
    x = torch.randn(2, 3, res, res)
    with torch.no_grad():
        expected = ref(x)
        assert (ours(x) - expected).abs().max() <= 1e-5 * expected.abs().max()
    feats = create_model(name, features_only=True)
    ref_feats = timm.create_model(timm_name, features_only=True)
    assert feats.feature_info.channels() == ref_feats.feature_info.channels()
    assert feats.feature_info.reduction() == ref_feats.feature_info.reduction() == [2, 4, 8, 16, 32]
    if name == "mobilenet_v4_hybrid_medium":  # the maps themselves, on the model with attention
        feats.load_state_dict(ours.state_dict(), strict=False)
        ref_feats.load_state_dict(ref.state_dict(), strict=False)
        with torch.no_grad():
            for a, b in zip(feats.eval()(x), ref_feats.eval()(x)):
                assert a.shape == b.shape and (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_options_width_and_refusals():
    """Width multiplier as timm's 0.5 / 0.75 variants, output stride by dilation, in_chans, refusals."""
    for name, timm_name, width in (
        ("mobilenet_v4_conv_small", "mobilenetv4_conv_small_050", 0.5),
        ("mobilenet_v4_hybrid_medium", "mobilenetv4_hybrid_medium_075", 0.75),
    ):
        ref = _random_timm(timm_name)
        ours = create_model(name, width_mult=width).eval()
        ours.load_state_dict(convert_state_dict(ref.state_dict(), "timm", name, width_mult=width))
        x = torch.randn(1, 3, 128, 128)
        with torch.no_grad():
            assert (ours(x) - ref(x)).abs().max() <= 1e-5 * ref(x).abs().max()
    feats = create_model("mobilenet_v4_hybrid_medium", features_only=True, output_stride=16, in_chans=1)
    maps = feats(torch.randn(1, 1, 128, 128))
    assert feats.feature_info.reduction() == [2, 4, 8, 16, 16] and maps[-1].shape[-1] == 8
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        create_model("mobilenet_v4_conv_small", minimalistic=True)
    with pytest.raises(ValueError, match="Unknown model"):
        create_model("mobilenet_v4_conv_tiny")


def test_attention_is_sdpa_and_counted():
    """Mobile MQA runs F.scaled_dot_product_attention; its explicit path gives the same numbers, and the
    multiply-adds of its two matmuls are what profile adds (Hybrid-M at 256: 41,943,040, by hand)."""
    block = MobileMQA(160, heads=4, key_dim=64, kv_stride=2, layer_scale=0.5).eval()
    x = torch.randn(2, 160, 16, 16)
    with torch.no_grad():
        fused = block(x)
        with explicit_attention():
            explicit = block(x)
    assert (fused - explicit).abs().max() <= 1e-5 * fused.abs().max()
    model = create_model("mobilenet_v4_hybrid_medium")
    without = sum(2 * m.heads * m.key_dim * (256 // r) ** 2 * (256 // r // s) ** 2
                  for m, r, s in _mqa_geometry(model))  # fmt: skip
    assert without == 41_943_040
    assert profile(model, 256).macs == 1_229_240_320 + without  # timm's conv + classifier count, plus attention


def _mqa_geometry(model: torch.nn.Module) -> list[tuple[MobileMQA, int, int]]:
    """Each attention block with its reduction (16 or 32) and key/value stride."""
    out = []
    for block, spec in zip(model.blocks, model.spec.blocks):
        if isinstance(block, MobileMQA):
            reduction = 16 if spec.stage == 2 else 32
            out.append((block, reduction, spec.kv_stride))
    return out


def test_hybrid_exports_to_onnx(tmp_path):
    """The attention exports (checked in ONNX Runtime by export itself, 1e-4)."""
    model = random_net(create_model("mobilenet_v4_hybrid_medium", num_classes=10))
    report = export(model, tmp_path / "h.onnx", img_size=128)
    assert report["max_rel_diff"] <= 1e-4


def test_pretrained_timm_through_the_hub_cache(tmp_path, monkeypatch):
    """``pretrained="timm"`` reads timm's in1k release from the torch.hub cache (offline: one sentence
    naming what to fetch), with timm's preprocessing for it."""
    from safetensors.torch import save_file

    from mobilenets.util.errors import WeightsError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(WeightsError, match="mobilenetv4_conv_medium.e500_r256_in1k"):
        create_model("mobilenet_v4_conv_medium", pretrained="timm")
    ref = _random_timm("mobilenetv4_conv_medium")
    (tmp_path / "checkpoints").mkdir(exist_ok=True)
    save_file(ref.state_dict(), tmp_path / "checkpoints" / "mobilenetv4_conv_medium.e500_r256_in1k.safetensors")
    model = create_model("mobilenet_v4_conv_medium", pretrained="timm").eval()
    assert model.pretrained_cfg["input_size"] == (3, 256, 256) and model.pretrained_cfg["crop_pct"] == 0.95
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max() <= 1e-5 * ref(x).abs().max()


@pytest.mark.parametrize(
    "name,timm_name",
    [("mobilenet_v4_hybrid_medium", "mobilenetv4_hybrid_medium"), ("mobilenet_v3_large", "mobilenetv3_large_100")],
)
def test_drop_path_rates_follow_timm(name, timm_name):
    """``drop_path_rate`` gives each residual block timm's stochastic-depth rate (linear in depth); in
    eval it changes nothing."""
    ref = timm.create_model(timm_name, drop_path_rate=0.2)
    want = [getattr(m.drop_path, "drop_prob", 0.0) for m in ref.modules() if getattr(m, "has_skip", False)]
    ours = create_model(name, drop_path_rate=0.2)
    got = [getattr(b.drop_path, "p", 0.0) for b in ours.blocks if getattr(b, "use_residual", False)]
    assert got == pytest.approx(want) and max(got) > 0.15
    plain = create_model(name).eval()
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 96, 96)
    assert torch.equal(ours.eval()(x), plain(x))
    with pytest.raises(ValueError, match="drop_path_rate must lie in"):
        create_model(name, drop_path_rate=1.5)
