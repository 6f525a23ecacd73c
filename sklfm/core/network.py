"""Time-conditioned MLP velocity field with an exact, vectorised divergence."""

import math

import torch
from torch import nn
from torch.nn import functional as F

# Each activation with its derivative written in terms of the pre-activation.
_ACTIVATIONS = {
    "relu": (torch.relu, lambda a: (a > 0).to(a.dtype)),
    "elu": (F.elu, lambda a: torch.where(a > 0, torch.ones_like(a), torch.exp(a.clamp(max=0)))),
    "softplus": (F.softplus, torch.sigmoid),
    "silu": (F.silu, lambda a: torch.sigmoid(a) * (1 + a * (1 - torch.sigmoid(a)))),
    "tanh": (torch.tanh, lambda a: 1 - torch.tanh(a) ** 2),
}

ACTIVATIONS = tuple(_ACTIVATIONS)


class VelocityMLP(nn.Module):
    """v(t, x): an MLP on the concatenation [t, x], as in the reference runs.

    Parameters are created and initialised from an explicit generator so that
    building a network never touches torch's global random state.
    """

    def __init__(self, n_features, hidden_layer_sizes, activation, generator=None):
        super().__init__()
        sizes = [n_features + 1, *hidden_layer_sizes, n_features]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            # PyTorch's default Linear initialisation, drawn from `generator`.
            bound = 1.0 / math.sqrt(fan_in)
            w = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=generator)
            b = torch.empty(fan_out).uniform_(-bound, bound, generator=generator)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        # Stored by name: the functions are looked up at call time so the module pickles.
        self.activation = activation

    def _layers(self, dtype):
        # Weights follow the input's dtype: float32 training, float64 exact scoring.
        return [(w.to(dtype), b.to(dtype)) for w, b in zip(self.weights, self.biases)]

    @staticmethod
    def _with_time(t, x):
        return torch.cat([t.expand(x.shape[0], 1), x], dim=1)

    def forward(self, t, x):
        act, _ = _ACTIVATIONS[self.activation]
        layers = self._layers(x.dtype)
        h = self._with_time(t, x)
        for w, b in layers[:-1]:
            h = act(F.linear(h, w, b))
        w, b = layers[-1]
        return F.linear(h, w, b)

    def velocity_and_divergence(self, t, x):
        """Return v(t, x) and the exact trace of dv/dx, per row.

        Forward-mode propagation of the d input tangents through the layers:
        one batched matmul per layer instead of d backward passes.
        """
        act, dact = _ACTIVATIONS[self.activation]
        layers = self._layers(x.dtype)
        n_rows, n_features = x.shape
        w, b = layers[0]
        a = F.linear(self._with_time(t, x), w, b)
        # tangent[i] = d h / d x_i, laid out (d, B, H) so each layer is one plain mm.
        tangent = w[:, 1:].T.unsqueeze(1) * dact(a)
        h = act(a)
        for w, b in layers[1:-1]:
            a = F.linear(h, w, b)
            tangent = (tangent.reshape(-1, w.shape[1]) @ w.T).view(n_features, n_rows, -1)
            tangent = tangent * dact(a)
            h = act(a)
        w, b = layers[-1]
        velocity = F.linear(h, w, b)
        divergence = torch.bmm(tangent, w.unsqueeze(2)).sum(dim=0).squeeze(1)
        return velocity, divergence

    @property
    def tangent_width(self):
        """Widest hidden layer: sizes the memory of `velocity_and_divergence`."""
        return max(w.shape[0] for w in self.weights[:-1]) if len(self.weights) > 1 else 1
