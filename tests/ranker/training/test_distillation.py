"""Distillation pieces: the losses against a teacher, and a student made of a teacher's layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.training.losses import distill_kl, get_loss, margin_mse
from bertsearch.ranker.training.student import layers_kept, make_student

pytestmark = pytest.mark.unit


def test_margin_mse_is_zero_when_the_student_has_the_teachers_margins():
    teacher = torch.tensor([[3.0, 1.0, -2.0], [0.5, 0.0, 0.2]])
    assert margin_mse(teacher + 7.0, teacher) == pytest.approx(0.0)  # a shift keeps every margin
    wrong = teacher.clone()
    wrong[0, 1] = 3.0  # the student ties the positive with a negative the teacher ranks 2 lower
    assert margin_mse(wrong, teacher) == pytest.approx(4.0 / 4)  # one margin off by 2, over 4 margins


def test_distill_kl_is_zero_for_the_same_distribution_and_pulls_towards_the_teacher():
    teacher = torch.tensor([[2.0, 0.0, -1.0]])
    assert distill_kl(teacher + 3.0, teacher) == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(1, 3, requires_grad=True)
    distill_kl(student, teacher).backward()
    assert student.grad[0, 0] < 0 < student.grad[0, 2]  # raise the teacher's favourite, lower its last
    assert get_loss("margin-mse") is margin_mse
    with pytest.raises(ValueError, match="margin-mse"):
        get_loss("mse")


def test_a_student_keeps_evenly_spaced_layers_and_the_head(tiny_cross_encoder_dir, tmp_path):
    assert layers_kept(6, 3) == [0, 2, 5] and layers_kept(6, 1) == [0] and layers_kept(12, 4) == [0, 4, 7, 11]
    with pytest.raises(ValueError, match="between 1 and 6"):
        layers_kept(6, 7)
    kept = make_student(tiny_cross_encoder_dir, 1, tmp_path / "student")
    assert kept == [0]
    student = CrossEncoder(tmp_path / "student", max_length=64).load()  # a trained head: it loads
    teacher = CrossEncoder(tiny_cross_encoder_dir, max_length=64).load()
    assert student.model.config.num_hidden_layers == 1 and teacher.model.config.num_hidden_layers == 2
    head = lambda m: m.model.classifier.weight.detach().numpy()  # noqa: E731
    np.testing.assert_array_equal(head(student), head(teacher))
