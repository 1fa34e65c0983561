"""Temperature scaling of class probabilities (Guo, Pleiss, Sun & Weinberger, *On calibration of
modern neural networks*, ICML 2017).

One scalar ``T`` divides the log-probabilities before the softmax: ``T > 1`` softens
overconfident probabilities, ``T < 1`` sharpens them; the most probable class never changes.
``T`` minimises the log-loss of out-of-fold predictions, so it is never fitted on the
predictions it corrects.
"""

from __future__ import annotations

import math

import numpy as np

#: probabilities are clipped here before every logarithm of the model stage (calibration, sample
#: pooling): a zero would give -inf and veto a class forever
PROBABILITY_FLOOR = 1e-12
#: the temperatures searched and accepted from a model file: sharpening or softening by more than
#: 10x means the head's probabilities are not worth rescaling (Guo et al. report T of about 1-3)
TEMPERATURE_RANGE = (0.1, 10.0)


def log_probabilities(proba: np.ndarray) -> np.ndarray:
    """``log p`` with ``p`` clipped to ``[PROBABILITY_FLOOR, 1]``."""
    return np.log(np.clip(proba, PROBABILITY_FLOOR, 1.0))


def fit_temperature(log_proba: np.ndarray, y_enc: np.ndarray) -> float:
    """The temperature minimising the mean negative log-likelihood of the encoded labels
    ``y_enc`` under ``softmax(log_proba / T)``; searched over ``log T`` for ``T`` in
    :data:`TEMPERATURE_RANGE`."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    rows = np.arange(len(y_enc))

    def nll(log_t: float) -> float:
        log_q = log_softmax(log_proba / math.exp(log_t), axis=1)
        return float(-log_q[rows, y_enc].mean())

    bounds = (math.log(TEMPERATURE_RANGE[0]), math.log(TEMPERATURE_RANGE[1]))
    return float(math.exp(minimize_scalar(nll, bounds=bounds, method="bounded").x))


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities of logits divided by the temperature."""
    from scipy.special import softmax

    return softmax(log_probabilities(proba) / temperature, axis=1)
