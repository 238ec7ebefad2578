"""torchvision and timm weights in our models give their outputs; features match timm's."""

from __future__ import annotations

import pytest
import torch
import torchvision

from conftest import random_net, rel_err
from mobilenets import convert_state_dict, create_model
from mobilenets.util.errors import WeightsError
from mobilenets.weights.hub import load_pretrained

timm = pytest.importorskip("timm")

TIMM = [
    ("mobilenetv1_100", "mobilenet_v1", 1.0),
    ("mobilenetv2_035", "mobilenet_v2", 0.35),
    ("mobilenetv2_100", "mobilenet_v2", 1.0),
    ("mobilenetv2_140", "mobilenet_v2", 1.4),
    ("mobilenetv3_large_075", "mobilenet_v3_large", 0.75),
    ("mobilenetv3_large_100", "mobilenet_v3_large", 1.0),
    ("mobilenetv3_small_050", "mobilenet_v3_small", 0.5),
    ("mobilenetv3_small_075", "mobilenet_v3_small", 0.75),
    ("mobilenetv3_small_100", "mobilenet_v3_small", 1.0),
]


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_torchvision_outputs_equal(name):
    ref = random_net(getattr(torchvision.models, name)())
    ours = create_model(name).eval()
    ours.load_state_dict(convert_state_dict(ref.state_dict(), "torchvision", name))
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) <= 1e-5


@pytest.mark.parametrize("timm_name,name,width", TIMM)
def test_timm_outputs_and_features_equal(timm_name, name, width):
    ref = random_net(timm.create_model(timm_name))
    ours = create_model(name, width_mult=width, bn_eps=1e-5).eval()
    ours.load_state_dict(convert_state_dict(ref.state_dict(), "timm", name, width_mult=width, bn_eps=1e-5))
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) <= 1e-5
    for os_ in (32, 16, 8):
        feats = create_model(name, width_mult=width, features_only=True, output_stride=os_, bn_eps=1e-5)
        ref_feats = timm.create_model(timm_name, features_only=True, output_stride=os_)
        feats.load_state_dict(
            convert_state_dict(ref.state_dict(), "timm", name, width_mult=width, bn_eps=1e-5), strict=False
        )
        ref_feats.load_state_dict(ref.state_dict(), strict=False)
        assert feats.feature_info.channels() == ref_feats.feature_info.channels()
        assert feats.feature_info.reduction() == ref_feats.feature_info.reduction()
        with torch.no_grad():
            for a, b in zip(feats.eval()(x), ref_feats.eval()(x)):
                assert a.shape == b.shape and rel_err(a, b) <= 1e-5


def test_out_indices_select_maps():
    model = create_model("mobilenet_v2", features_only=True, out_indices=(1, 3))
    assert model.feature_info.channels() == [24, 96]
    assert [f.shape[1] for f in model(torch.randn(1, 3, 64, 64))] == [24, 96]
    with pytest.raises(ValueError, match="out_indices"):
        create_model("mobilenet_v2", features_only=True, out_indices=(5,))


def test_wrong_architecture_is_named():
    ref = torchvision.models.mobilenet_v3_small()
    with pytest.raises(ValueError, match="no 'features"):
        convert_state_dict(ref.state_dict(), "torchvision", "mobilenet_v3_large")
    with pytest.raises(ValueError, match="torchvision has no mobilenet_v1"):
        convert_state_dict({}, "torchvision", "mobilenet_v1")


def test_local_files_load(tmp_path):
    from safetensors.torch import save_file

    ref = random_net(torchvision.models.mobilenet_v3_small())
    pth, st = tmp_path / "tv.pth", tmp_path / "timm.safetensors"
    torch.save(ref.state_dict(), pth)
    timm_ref = random_net(timm.create_model("mobilenetv3_small_100"))
    save_file(timm_ref.state_dict(), str(st))
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert rel_err(create_model("mobilenet_v3_small", pretrained=str(pth)).eval()(x), ref(x)) < 1e-5
        ours = create_model("mobilenet_v3_small", pretrained=str(st), bn_eps=1e-5).eval()
        assert rel_err(ours(x), timm_ref(x)) < 1e-5


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, path)
    with pytest.raises(WeightsError, match="Refusing to load"):
        load_pretrained(create_model("mobilenet_v2"), str(path))


def test_hub_cache_and_offline_message(tmp_path, monkeypatch):
    """The release is read from the torch.hub cache; offline, the error names the URL and the path."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    weights = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1
    cached = tmp_path / "checkpoints" / weights.url.rsplit("/", 1)[1]

    def offline(*_a, **_k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError, match=f"{weights.url}.*{cached}"):
        create_model("mobilenet_v3_small", pretrained="torchvision")
    ref = random_net(torchvision.models.mobilenet_v3_small())
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ref.state_dict(), cached)
    model = create_model("mobilenet_v3_small", pretrained="torchvision").eval()
    assert model.pretrained_cfg["crop_pct"] == 224 / 256
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(model(x), ref(x)) < 1e-5


def test_weights_file_architecture_is_recognised(tmp_path):
    """`--weights FILE` with a bare timm state dict: family, width and classes found from the tensors."""
    from mobilenets.runtime.classifier import load_classifier

    ref = random_net(timm.create_model("mobilenetv2_035", num_classes=7))
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    clf = load_classifier(weights=str(tmp_path / "w.pth"))
    assert clf.model.model_name == "mobilenet_v2" and clf.model.model_args["width_mult"] == 0.35
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert rel_err(clf.run(x), ref(x)) <= 1e-5
