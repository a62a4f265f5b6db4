import math

import pytest
import torch
import torch.nn.functional as F

from rnnexp.models import IGNORE_INDEX, ManyToManyHead, ManyToOneHead, RecurrentBackbone, sequence_loss
from rnnexp.models.nets.losses import sequence_loss_sum


def _outputs():
    torch.manual_seed(0)
    lengths = torch.tensor([3, 1])
    out = torch.randn(2, 3, 4)
    out[1, 1:] = 0
    return out, lengths


def test_last_pooling_takes_each_rows_last_valid_step():
    out, lengths = _outputs()
    head = ManyToOneHead(4, 2, "last")
    assert torch.equal(head.pool(out, lengths), torch.stack([out[0, 2], out[1, 0]]))


def test_last_pooling_of_full_length_rows_takes_the_last_step_and_its_gradient():
    # The full-length fast path (a view) and the gather path give the same values and gradients.
    out = torch.randn(3, 5, 4, requires_grad=True)
    head = ManyToOneHead(4, 2, "last")
    full = head.pool(out, torch.tensor([5, 5, 5]))
    assert torch.equal(full, out[:, 4])
    mixed = head.pool(out, torch.tensor([5, 5, 4]))
    assert torch.equal(mixed[:2], out[:2, 4]) and torch.equal(mixed[2], out[2, 3])
    (grad_full,) = torch.autograd.grad(full.sum(), out)
    (grad_mixed,) = torch.autograd.grad(mixed.sum(), out)
    assert grad_full[:, 4].eq(1).all() and grad_full[:, :4].eq(0).all()
    assert grad_mixed[2, 3].eq(1).all() and grad_mixed[2, 4].eq(0).all()


def test_mean_and_max_pool_only_valid_steps():
    out, lengths = _outputs()
    out[1, 1:] = 99.0  # padding must not count
    mean = ManyToOneHead(4, 2, "mean").pool(out, lengths)
    assert torch.allclose(mean, torch.stack([out[0].mean(0), out[1, 0]]))
    mx = ManyToOneHead(4, 2, "max").pool(out, lengths)
    assert torch.allclose(mx, torch.stack([out[0].amax(0), out[1, 0]]))


def test_bidirectional_last_pooling_equals_final_states_of_both_directions():
    torch.manual_seed(0)
    net = RecurrentBackbone(3, cell="gru", hidden_size=5, bidirectional=True).eval()
    lengths = torch.tensor([4, 2])
    out, final = net(torch.randn(2, 4, 3), lengths)
    pooled = ManyToOneHead(10, 2, "last", num_directions=2).pool(out, lengths)
    h = final[-1]  # [2, B, H]: forward then backward
    assert torch.allclose(pooled, torch.cat([h[0], h[1]], -1), atol=1e-6)


def test_many_to_many_is_a_per_step_projection():
    head = ManyToManyHead(4, 3)
    out, _ = _outputs()
    logits = head(out)
    assert logits.shape == (2, 3, 3)
    assert torch.allclose(logits[0, 1], head.proj(out[0, 1]))


def test_sequence_loss_ignores_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]])
    expected = F.cross_entropy(
        torch.stack([logits[0, 0], logits[0, 1], logits[0, 2], logits[1, 0]]), torch.tensor([1, 2, 3, 4])
    )
    assert torch.allclose(sequence_loss(logits, targets), expected)
    changed = logits.clone()
    changed[1, 1:] = 1000.0
    assert torch.allclose(sequence_loss(changed, targets), expected)


def test_sequence_loss_weights_like_tensorflow():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4)
    targets = torch.tensor([[0, 1, 2]])
    weights = torch.tensor([[1.0, 0.0, 2.0]])
    per_step = F.cross_entropy(logits[0], targets[0], reduction="none")
    total, count = sequence_loss_sum(logits, targets, weights)
    assert math.isclose(total.item(), (per_step[0] + 2 * per_step[2]).item(), rel_tol=1e-6)
    assert count.item() == 3.0


def test_correct_predictions_counts_like_torchmetrics_accuracy_and_skips_padding():
    from torchmetrics.classification import MulticlassAccuracy

    from rnnexp.models.tasks.epoch_sums import correct_predictions

    torch.manual_seed(0)
    logits = torch.randn(8, 20, 30)
    targets = torch.randint(0, 30, (8, 20))
    targets[logits.argmax(-1) == targets] = 0  # make some rows right and some wrong
    targets[:3] = logits[:3].argmax(-1)
    targets[5, 7:] = IGNORE_INDEX
    logits[5, 7:] = 1e4  # padded steps: a huge wrong logit must not count
    expected = MulticlassAccuracy(30, average="micro", ignore_index=IGNORE_INDEX)(logits.reshape(-1, 30), targets.reshape(-1))
    valid = int((targets != IGNORE_INDEX).sum())
    assert int(correct_predictions(logits, targets)) == round(expected.item() * valid)
    assert 0 < int(correct_predictions(logits, targets)) < valid


@pytest.mark.parametrize("pooling", ["nope"])
def test_unknown_pooling_is_a_config_error(pooling):
    from rnnexp.errors import ConfigError

    with pytest.raises(ConfigError, match="pooling"):
        ManyToOneHead(4, 2, pooling)
