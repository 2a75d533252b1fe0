"""Lesson 01, exercise 6: the REINFORCE update of the controller."""


def reinforce_update(controller, optimizer, choices, reward, baseline, decay=0.9):
    """One REINFORCE step on one sampled child; returns the new baseline (None at first)."""
    if baseline is None:  # the first reward sets the baseline: no push either way
        baseline = reward
    log_prob = controller(choices).log_prob  # log P(choices), summed over the decisions
    loss = -(reward - baseline) * log_prob
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return decay * baseline + (1 - decay) * reward
