"""``--batch-size auto`` against the memory it measures: the chosen batch's real training step fits the
budget, and a batch that cannot fit is refused before anything is written."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mobilenets import create_model
from mobilenets.train import autobatch
from mobilenets.train.config import TrainConfig
from mobilenets.train.loop import train
from mobilenets.util.errors import TrainingError

GIB = 1 << 30


def _step():
    model = create_model("mobilenet_v2", num_classes=10).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(batch: int) -> None:
        x = torch.randn(batch, 3, 160, 160).to(memory_format=torch.channels_last)
        loss = nn.functional.cross_entropy(model.train()(x), torch.zeros(batch, dtype=torch.long))
        loss.backward()
        optimizer.step()

    return step


def test_auto_batch_fits_its_budget_and_grows_with_it(monkeypatch):
    step = _step()
    chosen = {}
    for avail in (2 * GIB, 8 * GIB):
        monkeypatch.setattr(autobatch, "available_bytes", lambda a=avail: a)
        chosen[avail], how = autobatch.choose(step, "auto", n_train=1000)
        assert f"batch size {chosen[avail]} (auto" in how
        assert autobatch.step_growth(step, chosen[avail]) <= avail * autobatch.BUDGET_FRACTION
    assert 1 <= chosen[2 * GIB] < chosen[8 * GIB]


def test_a_batch_that_cannot_fit_is_refused_before_training(monkeypatch, tmp_path):
    monkeypatch.setattr(autobatch, "available_bytes", lambda: GIB // 2)
    out = tmp_path / "run"
    cfg = TrainConfig(model="mobilenet_v2", data="digits", output=str(out), epochs=1, batch_size=512, img_size=128,
                      workers=0)  # fmt: skip
    with pytest.raises(TrainingError, match=r"--batch-size 512 needs about .* GiB per step, more than the .*; use "):
        train(cfg)
    assert not out.exists()
