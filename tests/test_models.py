"""Model construction, options and mistakes."""

from __future__ import annotations

import pytest
import torch

import mobilenets
from conftest import random_net
from mobilenets import convert_state_dict, create_model, make_divisible


def test_list_models():
    assert mobilenets.list_models() == [
        "mobilenet_v1",
        "mobilenet_v2",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
        "mobilenet_v4_conv_large",
        "mobilenet_v4_conv_medium",
        "mobilenet_v4_conv_small",
        "mobilenet_v4_hybrid_large",
        "mobilenet_v4_hybrid_medium",
        "mobilenet_v5_300m",
        "mobilenet_v5_300m_enc",
        "mobilenet_v5_base",
    ]


@pytest.mark.parametrize(
    "value,expected",
    [(32 * 0.35, 16), (16, 16), (24 * 0.75, 24), (960 * 0.75, 720), (3, 8), (100, 104), (91, 88)],
)
def test_make_divisible_matches_tf_slim(value, expected):
    assert make_divisible(value) == expected


@pytest.mark.parametrize("name", mobilenets.list_models())
@pytest.mark.parametrize("size", [96, 161])
def test_any_resolution_and_in_chans(name, size):
    if name.endswith("_enc"):  # an encoder: its tokens, 16 x 16 at any input size; no classes to give it
        with pytest.raises(ValueError, match="is an encoder"):
            create_model(name, num_classes=7)
        model = create_model(name, in_chans=1, width_mult=0.5).eval()
        assert model(torch.randn(2, 1, size, size)).shape == (2, 2048, 16, 16)
        return
    model = create_model(name, num_classes=7, in_chans=1, width_mult=0.5).eval()
    assert model(torch.randn(2, 1, size, size)).shape == (2, 7)


def test_unknown_keyword_is_named():
    with pytest.raises(TypeError, match="widht_mult"):
        create_model("mobilenet_v3_large", widht_mult=0.5)
    with pytest.raises(TypeError, match="minimalistic"):
        create_model("mobilenet_v2", minimalistic=True)


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="mobilenet_v3_small.*Did you mean 'mobilenet_v3_small'"):
        create_model("mobilenet_v3_smal")


@pytest.mark.parametrize("bad", [0, -1.0, "1.0"])
def test_bad_width(bad):
    with pytest.raises(ValueError, match="width_mult must be a number > 0"):
        create_model("mobilenet_v2", width_mult=bad)


def test_bad_output_stride_lists_allowed():
    with pytest.raises(ValueError, match=r"\(8, 16, 32\)"):
        create_model("mobilenet_v1", output_stride=4)


def test_any_width_multiplier():
    assert create_model("mobilenet_v1", width_mult=0.1)(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    assert create_model("mobilenet_v3_small", width_mult=1.7)(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_defaults_follow_the_weights():
    bn = lambda m: next(x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d))  # noqa: E731
    assert bn(create_model("mobilenet_v2")).eps == 1e-5
    assert bn(create_model("mobilenet_v3_large")).eps == 1e-3
    assert bn(create_model("mobilenet_v3_large", bn_eps=1e-5, bn_momentum=0.01)).momentum == 0.01


def test_minimalistic_has_no_se_hswish_or_5x5():
    model = create_model("mobilenet_v3_large", minimalistic=True)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "SqueezeExcite" not in kinds and "Hardswish" not in kinds
    assert all(m.kernel_size in ((1, 1), (3, 3)) for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_reduced_tail_and_dilated_match_torchvision():
    import torchvision

    for kwargs in ({"reduced_tail": True}, {"dilated": True}, {"reduced_tail": True, "dilated": True}):
        ref = random_net(torchvision.models.mobilenet_v3_large(**kwargs))
        ours = create_model("mobilenet_v3_large", **kwargs).eval()
        ours.load_state_dict(convert_state_dict(ref.state_dict(), "torchvision", "mobilenet_v3_large", **kwargs))
        x = torch.randn(1, 3, 96, 96)
        with torch.no_grad():
            want, got = ref.features(x), ours.forward_features(x)
        assert got.shape == want.shape and (got - want).abs().max() <= 1e-5 * want.abs().max()


def test_reset_classifier_and_pre_logits():
    model = create_model("mobilenet_v3_small").eval()
    model.reset_classifier(5)
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 5)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 1024)
    model.reset_classifier(0)
    assert model(x).shape == (2, 1024)


def test_no_inplace_ops_break_autograd_when_heads_change():
    model = create_model("mobilenet_v2", width_mult=0.35)
    feats = model.forward_features(torch.randn(2, 3, 64, 64, requires_grad=True))
    (feats.sum() + feats.relu().sum()).backward()
