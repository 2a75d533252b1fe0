"""Packed networks compute exactly what the N separate networks compute, and train the same.

In float64, so that the only differences left (summation order) are far below the tolerances.
"""

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effnet_lab.model import B0_STAGES, EfficientNet, EfficientNetConfig, build
from effnet_lab.packed import (
    GroupedLinear,
    PackedStochasticDepth,
    pack,
    packed_loss,
    stack_images,
    stack_labels,
    unpack,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread

# B0's first three stages on the cifar stem, a 64-channel head: every kind of layer EfficientNet
# has (expansion, depthwise, squeeze-and-excitation, residual adds, the classifier), in milliseconds.
SMALL = EfficientNetConfig(width=0.5, depth=1.0, stem="cifar", num_classes=10, dropout=0.0, drop_path_rate=0.0,
                           stages=B0_STAGES[:3], head_channels=64)
N, BATCH, PIXELS = 3, 4, 8
TOLERANCE = dict(atol=1e-10, rtol=1e-8)



def separate_models(config=SMALL, n=N):
    return [build(config, seed=seed).double() for seed in range(n)]


def batches(n=N, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = [torch.randn(BATCH, 3, PIXELS, PIXELS, generator=generator, dtype=torch.float64) for _ in range(n)]
    labels = [torch.randint(0, 10, (BATCH,), generator=generator) for _ in range(n)]
    return images, labels


def assert_states_close(models, others, **tolerance):
    for model, other in zip(models, others, strict=True):
        state, other_state = model.state_dict(), other.state_dict()
        assert list(state) == list(other_state)
        for name in state:
            torch.testing.assert_close(other_state[name], state[name], msg=lambda m, name=name: f"{name}: {m}",
                                       **tolerance)


def unpacked_gradients(packed):
    """The packed gradients, split per model: each model's parameters by name."""
    holder = copy.deepcopy(packed)
    with torch.no_grad():
        for parameter, source in zip(holder.parameters(), packed.parameters(), strict=True):
            parameter.copy_(source.grad)
    return [dict(model.named_parameters()) for model in unpack(holder)]


def test_packed_outputs_and_batch_norm_statistics_equal_the_separate_models():
    models = separate_models()
    packed = pack(models)
    images, _ = batches()
    with torch.no_grad():
        outputs = packed(stack_images(images))  # training mode: batch statistics, per model
        for i, (model, x) in enumerate(zip(models, images)):
            torch.testing.assert_close(outputs[:, i], model(x), **TOLERANCE)
    assert outputs.shape == (BATCH, N, 10)
    # The training forward moved every model's running statistics, the packed ones alike.
    assert not torch.equal(models[0].stem.bn.running_mean, torch.zeros_like(models[0].stem.bn.running_mean))
    assert_states_close(models, unpack(packed), **TOLERANCE)

    packed.eval()
    with torch.no_grad():
        outputs = packed(images)  # a list of batches works too
        for i, (model, x) in enumerate(zip(models, images)):
            torch.testing.assert_close(outputs[:, i], model.eval()(x), **TOLERANCE)


def test_one_backward_gives_every_parameter_its_separate_gradient():
    models = separate_models()
    packed = pack(models)
    images, labels = batches()
    for model, x, y in zip(models, images, labels):
        F.cross_entropy(model(x), y).backward()
    loss = packed_loss(packed(stack_images(images)), stack_labels(labels))
    loss.backward()
    for model, gradients in zip(models, unpacked_gradients(packed)):
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
            torch.testing.assert_close(gradients[name], parameter.grad, msg=lambda m, name=name: f"{name}: {m}",
                                       **TOLERANCE)


@pytest.mark.parametrize("make_optimizer", [
    lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
    lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.05),
], ids=["sgd-momentum-weight-decay", "adamw"])
def test_optimizer_steps_on_the_packed_network_equal_steps_on_each_model(make_optimizer):
    models = separate_models()
    packed = pack(models)
    optimizers = [make_optimizer(model.parameters()) for model in models]
    packed_optimizer = make_optimizer(packed.parameters())
    for step in range(2):  # the second step uses the momentum and Adam's moments
        images, labels = batches(seed=step)
        for model, optimizer, x, y in zip(models, optimizers, images, labels):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        packed_optimizer.zero_grad()
        packed_loss(packed(stack_images(images)), stack_labels(labels)).backward()
        packed_optimizer.step()
    trained = unpack(packed)
    assert not torch.equal(trained[0].stem.conv.weight, build(SMALL, seed=0).double().stem.conv.weight)  # it moved
    # Adam divides by the root of the squared gradients: on a parameter whose gradient is zero
    # but for rounding (a batch-norm shift that the next batch norm removes), it turns 1e-17
    # of summation-order noise into lr * noise / eps, about 1e-9.
    assert_states_close(models, trained, atol=1e-8, rtol=1e-8)


def test_unpack_gives_back_the_same_networks_exactly():
    models = separate_models()
    images, _ = batches()
    with torch.no_grad():
        for model, x in zip(models, images):
            model(x)  # running statistics and num_batches_tracked away from their initial values
    for model in models:
        model.eval()
    returned = unpack(pack(models))
    assert len(returned) == N
    for model, back in zip(models, returned):
        assert type(back) is EfficientNet and back.config == model.config and not back.training
        assert_states_close([model], [back], atol=0, rtol=0)
        assert int(back.stem.bn.num_batches_tracked) == 1


def test_dropout_and_stochastic_depth_pack_with_one_mask_per_model():
    regularised = replace(SMALL, dropout=0.2, drop_path_rate=0.5)
    models = separate_models(regularised, n=2)
    packed = pack(models).eval()
    images, _ = batches(n=2)
    with torch.no_grad():  # evaluation: no masks, the same outputs
        outputs = packed(images)
        for i, (model, x) in enumerate(zip(models, images)):
            torch.testing.assert_close(outputs[:, i], model.eval()(x), **TOLERANCE)

    drop = next(m for m in packed.modules() if isinstance(m, PackedStochasticDepth))
    assert drop.n_models == 2 and drop.p > 0 and drop.training is False
    drop.train()
    branch = torch.ones(64, 2 * 5, 3, 3)
    kept = drop(branch)[:, :, 0, 0].reshape(64, 2, 5)
    # One coin per sample and model: all of a model's channels share it...
    assert torch.equal(kept.amax(dim=2), kept.amin(dim=2))
    assert set(kept.unique().tolist()) == {0.0, 1 / (1 - drop.p)}
    # ...and the two models' coins differ for some sample (all 64 equal: chance 2^-64 at p=0.5 or so).
    assert not torch.equal(kept[:, 0, 0], kept[:, 1, 0])


def test_grouped_linear_is_n_linear_layers():
    linears = [nn.Linear(6, 4) for _ in range(3)]
    grouped = GroupedLinear.stack(linears)
    x = torch.randn(5, 3 * 6)  # float32 here
    out = grouped(x)
    assert out.shape == (5, 3, 4) and grouped.bias.dim() == 1
    for i, linear in enumerate(linears):
        torch.testing.assert_close(out[:, i], linear(x[:, 6 * i: 6 * (i + 1)]))
        assert torch.equal(grouped.linear(i).weight, linear.weight) and torch.equal(grouped.linear(i).bias, linear.bias)


def test_networks_that_cannot_be_packed_are_refused_with_a_sentence():
    with pytest.raises(ValueError, match="non-empty list"):
        pack([])
    wider = build(replace(SMALL, width=0.75), seed=1)
    with pytest.raises(ValueError, match="model 1 differs from model 0 at 'stem.conv'.*same shape"):
        pack([build(SMALL, seed=0), wider])
    # Same tensor shapes, different strides: still not the same network.
    imagenet_stem = build(replace(SMALL, stem="imagenet"), seed=1)
    with pytest.raises(ValueError, match="stride"):
        pack([build(SMALL, seed=0), imagenet_stem])
    with pytest.raises(ValueError, match="cannot pack '1' \\(LayerNorm\\)"):
        pack([nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm(4))])
    with pytest.raises(ValueError, match=r"shape \(batch, 3 x 3 models, height, width\)"):
        pack(separate_models())(torch.randn(2, 3, PIXELS, PIXELS))
    with pytest.raises(TypeError, match="PackedNetwork"):
        unpack(build(SMALL))
