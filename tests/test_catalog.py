"""The weights catalogue against its publishers: torchvision's weight enums, timm's pretrained configs and
Google's files; and loading by catalogue name through the torch.hub cache (files placed there, offline)."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

import mobilenets
from conftest import random_net, shared_path
from mobilenets.models.registry import model_entry
from mobilenets.util.errors import WeightsError
from mobilenets.weights.catalog import CATALOG, get_weights, list_pretrained
from mobilenets.weights.hub import hub_dir

TV_ENUMS = {w.name: w.metrics_source.split("(")[1].rstrip(")") for w in CATALOG if w.source == "torchvision"}


@pytest.mark.parametrize("name", sorted(TV_ENUMS))
def test_torchvision_entries_equal_torchvisions_metadata(name):
    import torchvision.models as tvm

    w, ref = get_weights(name), tvm.get_weight(TV_ENUMS[name])
    assert w.url == ref.url
    published = next(iter(ref.meta["_metrics"].values()))
    ours = {"top1": "acc@1", "top5": "acc@5", "box_map": "box_map", "miou": "miou", "pixel_acc": "pixel_acc"}
    assert {ours[k]: v for k, v in w.metrics.items()} == pytest.approx(published)
    if w.transforms is not None:
        tf = ref.transforms()
        assert w.transforms.size == tf.crop_size[0]
        assert w.transforms.size / w.transforms.crop_pct == pytest.approx(tf.resize_size[0])
        assert (w.transforms.mean, w.transforms.std) == (tuple(tf.mean), tuple(tf.std))


@pytest.mark.parametrize("weights", [w for w in CATALOG if w.source == "timm"], ids=lambda w: w.name)
def test_timm_entries_equal_timms_pretrained_cfg(weights):
    timm = pytest.importorskip("timm")
    tag = weights.cache_name.removesuffix(".safetensors")
    ref = timm.models.get_pretrained_cfg(tag)
    assert weights.url == f"https://huggingface.co/{ref.hf_hub_id}/resolve/main/model.safetensors"
    cfg = weights.pretrained_cfg(model_entry(weights.model).cfg)
    assert cfg["input_size"] == ref.input_size and cfg["crop_pct"] == ref.crop_pct
    assert (cfg["interpolation"], tuple(cfg["mean"]), tuple(cfg["std"])) == (ref.interpolation, ref.mean, ref.std)
    assert weights.license.lower() == ref.license


def test_google_entries_are_the_shared_files():
    folder = shared_path("weights")
    for w in (w for w in CATALOG if w.source == "google"):
        assert hashlib.sha256((folder / w.cache_name).read_bytes()).hexdigest() == w.sha256, w.name


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    hub_dir().mkdir(parents=True)
    return hub_dir()


def test_a_google_file_loads_by_name_from_the_hub_cache(hub_cache):
    src = shared_path("weights", "mobilenet_v3_small_1.0_224_uint8.tflite")
    name = "mobilenet_v3_small.google_uint8_in1k"
    shutil.copy(src, hub_cache / get_weights(name).cache_name)
    model = mobilenets.create_model(name, pretrained=True).eval()
    ref = mobilenets.load_tflite(src).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        out, expected = model(x), ref(x)
    assert out.std() > 0.1 and torch.equal(out, expected)
    by_file = mobilenets.create_model("mobilenet_v3_small", pretrained=src.name).eval()  # its own file name
    with torch.inference_mode():
        assert torch.equal(by_file(x), expected)
    with pytest.raises(WeightsError, match="are weights for mobilenet_v3_small, not mobilenet_v2"):
        mobilenets.create_model("mobilenet_v2", pretrained=src.name)
    (hub_cache / get_weights(name).cache_name).write_bytes(src.read_bytes()[:-1] + b"\0")
    with pytest.raises(WeightsError, match="sha256"):
        mobilenets.create_model(name, pretrained=True)


def test_timm_weights_load_by_name_and_by_source_and_match_timm(hub_cache):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    ref = random_net(timm.create_model("mobilenetv2_140", pretrained=False))
    name = "mobilenet_v2.w140_ra_in1k"
    assert name in list_pretrained("mobilenet_v2.*")
    save_file(ref.state_dict(), str(hub_cache / get_weights(name).cache_name))
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = ref(x)
        for model in (mobilenets.create_model(name, pretrained=True),
                      mobilenets.create_model("mobilenet_v2", width_mult=1.4, pretrained="timm")):  # fmt: skip
            out = model.eval()(x)
            assert (out - expected).abs().max() <= 1e-4 * expected.abs().max()
            assert model.pretrained_cfg["interpolation"] == "bicubic" and model.pretrained_cfg["weights"] == name
    untrained = mobilenets.create_model(name)
    assert untrained.model_args["width_mult"] == 1.4 and untrained.model_args["bn_eps"] == 1e-5


def test_unknown_names_and_sources_are_one_sentence():
    with pytest.raises(ValueError, match="did you mean mobilenet_v2.tv_in1k"):
        mobilenets.create_model("mobilenet_v2.tv3_in1k", pretrained=True)
    with pytest.raises(WeightsError, match="torchvision publishes no weights for mobilenet_v1"):
        mobilenets.create_model("mobilenet_v1", pretrained="torchvision")
    with pytest.raises(ValueError, match="pretrained=True needs a weights name"):
        mobilenets.create_model("mobilenet_v2", pretrained=True)
