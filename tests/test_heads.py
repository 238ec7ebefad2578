"""Detection (SSDLite) and segmentation (LR-ASPP) heads: torchvision parity, every backbone, refusals."""

from __future__ import annotations

import pytest
import torch
import torchvision
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from conftest import SHARED, random_net
from mobilenets import convert_state_dict, create_model, list_models, profile


def _photos(n: int = 2, size: tuple[int, int] | None = None) -> list[torch.Tensor]:
    """Real COCO val2017 photos as [0, 1] tensors (random images where ../shared is absent)."""
    folder = SHARED / "coco128" / "images" / "val2017"
    if not folder.is_dir():
        return [torch.rand(3, 240, 320) for _ in range(n)]
    out = []
    for path in sorted(folder.glob("*.jpg"))[:n]:
        img = Image.open(path).convert("RGB")
        out.append(pil_to_tensor(img.resize(size) if size else img).float() / 255)
    return out


def _random_torchvision(model: torch.nn.Module) -> torch.nn.Module:
    """Random BN statistics and convolution weights at a scale where every layer matters."""
    return random_net(model, seed=2, check_size=None)


def _same_weights(name: str, builder) -> tuple[torch.nn.Module, torch.nn.Module]:
    """torchvision's ``builder`` with random weights and BN statistics, and our ``name`` given its weights."""
    theirs = _random_torchvision(builder(weights=None, weights_backbone=None)).eval()
    ours = create_model(name).eval()
    ours.load_state_dict(convert_state_dict(theirs.state_dict(), "torchvision", name))
    return theirs, ours


def test_names_and_parameter_counts_equal_torchvision():
    assert "ssdlite_mobilenet_v4_hybrid_medium" in list_models("detection")
    assert "lraspp_mobilenet_v1" in list_models("segmentation")
    assert set(list_models("all")) >= set(list_models()) | set(list_models("detection"))
    for name, ref in [
        ("ssdlite320_mobilenet_v3_large", torchvision.models.detection.ssdlite320_mobilenet_v3_large),
        ("lraspp_mobilenet_v3_large", torchvision.models.segmentation.lraspp_mobilenet_v3_large),
    ]:
        theirs = ref(weights=None, weights_backbone=None)
        ours = create_model(name)
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        assert count(ours) == count(theirs) in (3_440_060, 3_221_538)
        assert [b.shape for b in ours.buffers()] == [b.shape for b in theirs.buffers()]


@pytest.mark.parametrize(
    "name,weights,size",
    [("ssdlite320_mobilenet_v3_large", "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1", 320),
     ("lraspp_mobilenet_v3_large", "LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1", 520)],
)  # fmt: skip
def test_profile_counts_equal_torchvision_published(name, weights, size):
    """Multiply-adds of the network (detection: without resizing and NMS) as torchvision publishes them."""
    meta = torchvision.models.get_weight(weights).meta
    prof = profile(create_model(name), size)
    assert prof.params == meta["num_params"] and round(prof.macs / 1e9, 3) == meta["_ops"]


def test_lraspp_equals_torchvision_given_its_weights():
    theirs, ours = _same_weights("lraspp_mobilenet_v3_large", torchvision.models.segmentation.lraspp_mobilenet_v3_large)
    x = torch.stack(_photos(2, (320, 256)))
    x = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        ref, got = theirs(x)["out"], ours(x)["out"]
    assert got.shape == ref.shape == (2, 21, 256, 320)
    assert ref.std() > 0.1 and (got - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_ssdlite_equals_torchvision_on_real_photos():
    theirs, ours = _same_weights(
        "ssdlite320_mobilenet_v3_large", torchvision.models.detection.ssdlite320_mobilenet_v3_large
    )
    photos = _photos(3)
    with torch.no_grad():
        ref, got = theirs(photos), ours(photos)
    for r, g in zip(ref, got):
        assert len(g["boxes"]) == len(r["boxes"]) > 10
        assert torch.equal(g["labels"], r["labels"])
        assert torch.allclose(g["scores"], r["scores"], atol=1e-5)
        assert torch.allclose(g["boxes"], r["boxes"], atol=1e-3)
    # training mode: torchvision's losses from the same machinery
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 120.0, 200.0]]), "labels": torch.tensor([1])}] * len(photos)
    losses = ours.train()(photos, targets)
    assert set(losses) == {"bbox_regression", "classification"} and all(v.isfinite() for v in losses.values())


@pytest.mark.parametrize("backbone", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v4_conv_small",
                                      "mobilenet_v4_hybrid_medium"])  # fmt: skip
def test_heads_on_every_backbone(backbone):
    """The taps come from ``feature_info``: SSDLite reads strides 16 and 32 (then 64..512 from its extra
    layers), LR-ASPP strides 8 and 16; both run and keep torchvision's interfaces."""
    det = create_model(f"ssdlite_{backbone}", num_classes=5).eval()
    x = torch.rand(3, 320, 320)
    maps = det.backbone(det.transform([x])[0].tensors)
    assert [m.shape[-1] for m in maps.values()] == [20, 10, 5, 3, 2, 1]
    with torch.no_grad():
        (out,) = det([x])
    assert set(out) == {"boxes", "scores", "labels"} and bool((out["labels"] < 5).all())
    seg = create_model(f"lraspp_{backbone}", num_classes=4).eval()
    low, high = seg.backbone(torch.rand(1, 3, 128, 96)).values()
    assert low.shape[-2:] == (16, 12) and high.shape[-2:] == (8, 6)
    assert seg(torch.rand(1, 3, 128, 96))["out"].shape == (1, 4, 128, 96)


def test_refusals_are_one_sentence():
    with pytest.raises(ValueError, match="Unknown model 'mobilenet_v9'"):
        create_model("ssdlite_mobilenet_v9")
    with pytest.raises(TypeError, match="unexpected keyword argument.*size"):
        create_model("lraspp_mobilenet_v2", size=320)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        create_model("ssdlite_mobilenet_v2", num_classes=1)
    with pytest.raises(ValueError, match="torchvision has no ssdlite_mobilenet_v2"):
        convert_state_dict({}, "torchvision", "ssdlite_mobilenet_v2")


def test_pretrained_torchvision_from_the_hub_cache(tmp_path, monkeypatch):
    """``pretrained="torchvision"`` reads torchvision's COCO release from the torch.hub cache (made here:
    nothing is downloaded in tests) and gives torchvision's outputs."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    weights = torchvision.models.get_weight("LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1")
    ref = _random_torchvision(
        torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)
    ).eval()
    cached = tmp_path / "checkpoints" / weights.url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), cached)
    ours = create_model("lraspp_mobilenet_v3_large", pretrained="torchvision").eval()
    assert ours.pretrained_cfg["categories"][15] == "person"
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        assert (ours(x)["out"] - ref(x)["out"]).abs().max() <= 1e-5 * ref(x)["out"].abs().max()


@pytest.mark.parametrize("name", ["ssdlite_mobilenet_v2", "lraspp_mobilenet_v2"])
def test_model_args_rebuild_a_backbone_from_google_weights(name):
    """Google's TFLite backbone brings TF "SAME" padding; the task model's ``model_args`` record it, so a
    checkpoint rebuilt from them (what ``load_checkpoint`` does) is the net that was trained."""
    weights = SHARED / "weights" / "mobilenet_v2_1.0_224_quant.tflite"
    if not weights.is_file():
        pytest.skip("needs ../shared/data/weights")
    trained = random_net(create_model(name, num_classes=5, pretrained_backbone=str(weights)), check_size=None).eval()
    assert trained.model_args["padding"] == "same"
    rebuilt = create_model(name, **trained.model_args).eval()
    rebuilt.load_state_dict(trained.state_dict())
    x = _photos(1, (224, 160))
    with torch.no_grad():
        if name.startswith("lraspp"):
            want, got = trained(x[0][None])["out"], rebuilt(x[0][None])["out"]
            assert (got - want).abs().max() <= 1e-5 * want.abs().max()
        else:
            want, got = trained.backbone(x[0][None]), rebuilt.backbone(x[0][None])
            assert all(torch.equal(got[k], want[k]) for k in want)
