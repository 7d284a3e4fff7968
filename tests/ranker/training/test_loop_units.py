"""The training loop's pieces without Ray: losses, the learning-rate schedule, epoch order, config checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bertsearch.ranker.training.loop import TrainConfig, epoch_order, steps_per_epoch, warmup_linear_decay
from bertsearch.ranker.training.losses import listwise_softmax_ce, pointwise_bce

# --- losses and schedule (unit) -----------------------------------------------------------------


@pytest.mark.unit
def test_listwise_loss_is_the_softmax_cross_entropy_of_the_positive():
    scores = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, -1.0]])
    expected = -np.mean([np.log(np.exp(2) / (np.exp(2) + 2)), np.log(1 / (1 + np.e + np.exp(-1)))])
    assert float(listwise_softmax_ce(scores)) == pytest.approx(expected, rel=1e-6)
    assert float(listwise_softmax_ce(torch.zeros(4, 8))) == pytest.approx(math.log(8), rel=1e-6)


@pytest.mark.unit
def test_pointwise_bce_labels_column_zero_positive():
    scores = torch.tensor([[3.0, -3.0]])
    expected = -(np.log(1 / (1 + np.exp(-3.0))) + np.log(1 - 1 / (1 + np.exp(3.0)))) / 2
    assert float(pointwise_bce(scores)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="negatives"):
        pointwise_bce(torch.zeros(3, 1))


@pytest.mark.unit
def test_schedule_warms_up_then_decays_to_zero_and_epoch_order_is_seeded():
    factor = warmup_linear_decay(total_steps=10, warmup_steps=4)
    values = [factor(s) for s in range(11)]
    assert values[:4] == sorted(values[:4]) and values[3] < 1.0 and values[4] == 1.0
    assert values[10] == 0.0 and values[4:] == sorted(values[4:], reverse=True)
    assert epoch_order(20, seed=1, epoch=2) == epoch_order(20, seed=1, epoch=2)
    assert epoch_order(20, seed=1, epoch=2) != epoch_order(20, seed=1, epoch=3)
    assert sorted(epoch_order(20, seed=1, epoch=2)) == list(range(20))


@pytest.mark.unit
def test_train_config_rejects_impossible_settings():
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=0)
    with pytest.raises(ValueError, match="cannot fill one step"):
        steps_per_epoch(3, workers=2, config=TrainConfig(groups_per_batch=2))
    assert steps_per_epoch(17, workers=2, config=TrainConfig(groups_per_batch=2, grad_accum=2)) == 2
    assert steps_per_epoch(400, workers=1, config=TrainConfig(max_steps_per_epoch=5)) == 5
