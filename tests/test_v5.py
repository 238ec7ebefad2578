"""MobileNetV5 (Gemma 3n's vision encoder): counts, timm parity (outputs and features), Gemma's weights from
the Hugging Face hub cache, and fine-tuning through train()."""

from __future__ import annotations

import pytest
import torch

from conftest import random_net, rel_err
from mobilenets import convert_state_dict, create_model, list_models, profile
from mobilenets.util.errors import WeightsError

timm = pytest.importorskip("timm")

# ours, timm's, parameters (timm 1.0.31), multiply-adds at 256 px (attention counted)
V5 = [
    ("mobilenet_v5_300m_enc", "mobilenetv5_300m_enc", 294_126_912, 43_684_544_512),
    ("mobilenet_v5_300m", "mobilenetv5_300m", 296_175_912, 43_686_592_512),
    ("mobilenet_v5_base", "mobilenetv5_base", 82_647_976, 20_051_804_160),
]


def _random(model: torch.nn.Module) -> torch.nn.Module:
    """:func:`conftest.random_net`, with every RMS norm's scale and layer scale drawn in [0.5, 1.5]."""
    model = random_net(model, check_size=None)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if "rmsnorm" in type(m).__name__.lower() or isinstance(getattr(m, "gamma", None), torch.nn.Parameter):
                p = m.weight if hasattr(m, "weight") else m.gamma
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return model.eval()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and rel_err(a, b) <= 1e-5


def _unset(make, *args, **kwargs) -> torch.nn.Module:
    """A model built on the meta device and given uninitialised memory: 300M parameters without the seconds
    of their initialisation, for weights that are all set next (a missed one would be garbage, not zero)."""
    with torch.device("meta"):
        model = make(*args, **kwargs)
    return model.to_empty(device="cpu")


@pytest.fixture(scope="module")
def timm_encoder() -> torch.nn.Module:
    """timm's Gemma 3n encoder with random weights (:func:`_random`), built once for the module."""
    return _random(_unset(timm.create_model, "mobilenetv5_300m_enc"))


def _timm_model(timm_name: str, encoder: torch.nn.Module, **kwargs) -> torch.nn.Module:
    """timm's model; the 300M classifier with the random encoder's weights (and a random classifier)."""
    if timm_name == "mobilenetv5_300m_enc":
        return encoder
    model = _unset(timm.create_model, timm_name, **kwargs)
    if timm_name == "mobilenetv5_base":
        return _random(model)
    model.load_state_dict(encoder.state_dict(), strict=False)
    torch.nn.init.normal_(model.classifier.weight, std=0.05)
    torch.nn.init.zeros_(model.classifier.bias)
    return model.eval()


@pytest.mark.parametrize("name,timm_name,params,macs", V5)
def test_counts_and_outputs_equal_timm(name, timm_name, params, macs, timm_encoder):
    """Parameters equal timm's; outputs too (the encoder's 2048 x 16 x 16 tokens, the classifiers' logits)
    at 256 px with random weights, norm scales and layer scales of order 1, within 1e-5 of their scale."""
    assert name in list_models()
    kwargs = {} if name.endswith("_enc") else {"num_classes": 10}
    ref = _timm_model(timm_name, timm_encoder, **kwargs)
    ours = _unset(create_model, name, **kwargs)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    with torch.device("meta"):
        assert profile(create_model(name).eval(), 256).params == params
        assert profile(create_model(name).eval(), 256).macs == macs
    ours.load_state_dict(convert_state_dict(ref.state_dict(), "timm", name, **kwargs))
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        expected = ref(x)
        assert expected.shape == ((1, 2048, 16, 16) if name.endswith("_enc") else (1, 10))
        assert _close(ours.eval()(x), expected)
    if name == "mobilenet_v5_base":  # the feature maps, as timm's features_only gives them
        feats = create_model(name, features_only=True).eval()
        feats.load_state_dict(ours.state_dict(), strict=False)
        with torch.no_grad():
            maps = ref.forward_intermediates(x, intermediates_only=True)
            assert all(_close(a, b) for a, b in zip(feats(x), maps, strict=True))
        assert feats.feature_info.reduction() == [2, 4, 8, 16, 32]


def test_tokens_are_16x16_at_any_size():
    """256 tokens for 256, 512 and 768 px inputs alike (the adapter pools to 16x16)."""
    model = create_model("mobilenet_v5_base", num_classes=0).eval()
    with torch.no_grad():
        for size in (64, 512):
            assert model.forward_features(torch.randn(1, 3, size, size)).shape == (1, 2048, 16, 16)


def test_gemma_weights_from_the_hugging_face_cache(tmp_path, monkeypatch, timm_encoder):
    """``pretrained="timm"`` reads ``timm/mobilenetv5_300m.gemma3n`` from the Hugging Face hub cache (a file
    made here in its layout; offline and missing: one sentence saying where to put it); the licence travels
    in ``pretrained_cfg``; the classifier variant gets the encoder, its SAME padding and a fresh classifier."""
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("mobilenets.weights.hub.answers", lambda host, port: False)  # this machine is offline
    with pytest.raises(WeightsError, match=r"offline, .*models--timm--mobilenetv5_300m\.gemma3n/snapshots"):
        create_model("mobilenet_v5_300m_enc", pretrained="timm")
    ref = timm_encoder
    repo = tmp_path / "models--timm--mobilenetv5_300m.gemma3n"
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    save_file(ref.state_dict(), repo / "snapshots" / "0123abc" / "model.safetensors")
    enc = create_model("mobilenet_v5_300m_enc", pretrained="timm").eval()
    assert enc.pretrained_cfg["license"].startswith("Gemma") and enc.pretrained_cfg["input_size"] == (3, 768, 768)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert _close(enc(x), ref(x))
    clf = create_model("mobilenet_v5_300m", pretrained="timm", num_classes=3).eval()
    assert clf.classifier.out_features == 3
    with torch.no_grad():
        assert _close(clf.forward_features(x), ref(x))


def test_fine_tunes_through_train(tmp_path):
    """The classifier variant trains on a folder of images with the same ``train()`` (128 px: 9 s less)."""
    from PIL import Image

    from mobilenets.train.config import TrainConfig
    from mobilenets.train.loop import train

    for split in ("train", "val"):
        for label, color in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            folder = tmp_path / "data" / split / label
            folder.mkdir(parents=True)
            for i in range(1):
                Image.new("RGB", (64, 64), tuple(c + 10 * i for c in color)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    result = train(TrainConfig(model="mobilenet_v5_base", data=str(tmp_path / "data"), output=str(out), epochs=1,
                               batch_size=2, img_size=128, workers=0))  # fmt: skip
    assert result["history"][0]["train_loss"] > 0 and (out / "best.safetensors").exists()
    tuned = create_model("mobilenet_v5_base", pretrained=str(out / "best.safetensors"), num_classes=2)
    assert tuned.classifier.out_features == 2
