"""Time-conditioned MLP velocity field with an exact, vectorised divergence."""

import math

import torch
from torch import nn
from torch.nn import functional as F


def _relu(a):
    return torch.relu(a), (a > 0).to(a.dtype)


def _elu(a):
    return F.elu(a), torch.where(a > 0, torch.ones_like(a), torch.exp(a.clamp(max=0)))


def _softplus(a):
    return F.softplus(a), torch.sigmoid(a)


def _silu(a):
    s = torch.sigmoid(a)
    return F.silu(a), s * (1 + a * (1 - s))


def _tanh(a):
    h = torch.tanh(a)
    return h, 1 - h**2


# Each activation with a function of the pre-activation that returns the
# activation and its derivative together (sharing work where they can).
_ACTIVATIONS = {
    "relu": (torch.relu, _relu),
    "elu": (F.elu, _elu),
    "softplus": (F.softplus, _softplus),
    "silu": (F.silu, _silu),
    "tanh": (torch.tanh, _tanh),
}

ACTIVATIONS = tuple(_ACTIVATIONS)


def _with_time(t, x):
    return torch.cat([t.expand(x.shape[0], 1), x], dim=1)


def _pad(velocity, n_conditions):
    # Conditions ride along in the ODE state with zero velocity.
    if not n_conditions:
        return velocity
    return F.pad(velocity, (0, n_conditions))


class VelocityMLP(nn.Module):
    """v(t, x | c): an MLP on the concatenation [t, x, c], as in the reference runs.

    With `n_conditions` > 0 the network reads a condition c (one row per x)
    after the features; it outputs the n_features velocities of x only. The
    ODE state of a conditional flow is then [x, c], and the frozen evaluator
    gives c zero velocity, so every solve carries each row's condition along.

    Parameters are created and initialised from an explicit generator so that
    building a network never touches torch's global random state.
    """

    def __init__(self, n_features, hidden_layer_sizes, activation, generator=None, n_conditions=0):
        super().__init__()
        self.n_features = int(n_features)
        self.n_conditions = int(n_conditions)
        sizes = [n_features + n_conditions + 1, *hidden_layer_sizes, n_features]
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

    @classmethod
    def from_parameters(cls, weights, biases, activation):
        """A network with the given layer weights (out x in) and biases, e.g. read from a file.

        The output size is n_features; inputs beyond [t, x] are conditions.
        Raises ValueError when they do not form such an MLP.
        """
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        if not weights or len(weights) != len(biases) or any(w.dim() != 2 for w in weights):
            raise ValueError("weights and biases must be non-empty lists of equal length")
        sizes = [w.shape[0] for w in weights[:-1]]
        n_features = weights[-1].shape[0]
        n_conditions = weights[0].shape[1] - 1 - n_features
        if n_conditions < 0:
            raise ValueError("the first layer has fewer inputs than [t, x] needs")
        # A throwaway generator: building the layers must not touch torch's global state.
        net = cls(n_features, sizes, activation, torch.Generator(), n_conditions)
        state = {f"weights.{i}": w for i, w in enumerate(weights)}
        state.update({f"biases.{i}": b for i, b in enumerate(biases)})
        try:
            net.load_state_dict(state)  # checks every shape
        except RuntimeError as exc:
            raise ValueError(str(exc)) from exc
        return net

    def _layers(self, dtype):
        # Weights follow the input's dtype: float32 training, float64 exact scoring.
        return [(w.to(dtype), b.to(dtype)) for w, b in zip(self.weights, self.biases)]

    def forward(self, t, x):
        """v(t, x) for rows x ([x, c] when conditional) and time t ((1, 1) or (n, 1))."""
        return _forward(_ACTIVATIONS[self.activation][0], self._layers(x.dtype), t, x)

    def frozen(self, dtype, device=None):
        """A read-only evaluator with the weights cast to `dtype` once.

        Solvers call the velocity (and its divergence) many times per solve;
        making this once per solve saves the casts and precomputes the
        row-independent parts of the divergence. It holds detached copies and
        is not stored anywhere, so the module itself is left unchanged.
        """
        return FrozenVelocity(self, dtype, device)

    def velocity_and_divergence(self, t, x):
        """Return the state velocity at x ([x, c] when conditional) and the exact trace of dv/dx."""
        return self.frozen(x.dtype, x.device).velocity_and_divergence(t, x)

    @property
    def tangent_width(self):
        """Widest hidden layer: sizes the memory of `velocity_and_divergence`."""
        return max(w.shape[0] for w in self.weights[:-1]) if len(self.weights) > 1 else 1


def _forward(act, layers, t, x):
    h = _with_time(t, x)
    for w, b in layers[:-1]:
        h = act(F.linear(h, w, b))
    w, b = layers[-1]
    return F.linear(h, w, b)


class FrozenVelocity:
    """A VelocityMLP's function at fixed weights, in one dtype, for ODE solves.

    The exact divergence tr(dv/dx) of v = W_L s(... s(W_1 s(W_0 [t, x]))) is
    tr(W_L D_{L-1} W_{L-1} ... D_0 W_x), with D_k = diag(s'(a_k)) per row and
    W_x the columns of W_0 for x. The row-independent products are formed
    once here, so that per evaluation the work is a few wide matmuls:

    - one hidden layer: tr = D_0 . diag(W_x W_L);
    - two: tr = sum_p D_1p (D_0 @ M)_p with M = (W_1 * (W_x W_L)^T)^T;
    - three or more: the d input tangents enter the first hidden-to-hidden
      layer as one matmul, D_0 @ P with P[r, (i, q)] = W_x[r, i] W_1[q, r];
      they go through the middle layers as usual; and the last
      hidden-to-hidden layer and the output layer are contracted in one matmul
      with Q[(i, q), p] = W_L[i, p] W_{L-1}[p, q], whose result is dotted
      with D_{L-1}.

    Condition inputs are not differentiated (they have zero velocity), so
    W_x is the columns for x only. Each is exact (sums reordered only). With one or two hidden layers that is
    about d times fewer multiply-adds than propagating the d input tangents
    layer by layer; with three or more it is the same multiply-adds (d x width^2
    per hidden-to-hidden layer and row, as for d backward passes), done in
    wider, faster matmuls and with fewer passes over the (rows x d x width)
    tangent.
    """

    def __init__(self, net, dtype, device=None):
        with torch.no_grad():
            self.layers = [
                (w.detach().to(device=device, dtype=dtype), b.detach().to(device=device, dtype=dtype))
                for w, b in zip(net.weights, net.biases)
            ]
            self.act, self.act_and_grad = _ACTIVATIONS[net.activation]
            self.n_hidden = len(self.layers) - 1
            self.n_features, self.n_conditions = net.n_features, net.n_conditions
            w_out = self.layers[-1][0]
            if self.n_hidden == 0:
                return
            w_x = self.layers[0][0][:, 1 : 1 + self.n_features]
            if self.n_hidden == 1:
                self.trace_vec = (w_x * w_out.T).sum(dim=1)
            elif self.n_hidden == 2:
                w_1 = self.layers[1][0]
                self.trace_mat = (w_1 * (w_x @ w_out).T).T.contiguous()
            else:
                w_1, w_last = self.layers[1][0], self.layers[-2][0]
                # P[r, i, q] = w_x[r, i] * w_1[q, r]
                self.first = (w_x.unsqueeze(2) * w_1.T.unsqueeze(1)).reshape(w_x.shape[0], -1)
                # Q[i, q, p] = w_out[i, p] * w_last[p, q]
                self.last = (w_out.unsqueeze(2) * w_last.unsqueeze(0)).permute(0, 2, 1)
                self.last = self.last.reshape(-1, w_last.shape[0])

    def __call__(self, t, x):
        return _pad(_forward(self.act, self.layers, t, x), self.n_conditions)

    def velocity_and_divergence(self, t, x):
        velocity, divergence = self._velocity_and_divergence(t, x)
        return _pad(velocity, self.n_conditions), divergence

    def _velocity_and_divergence(self, t, x):
        n_rows, n_features = x.shape[0], self.n_features
        layers = self.layers
        if self.n_hidden == 0:
            w, b = layers[0]
            trace = torch.diagonal(w[:, 1 : 1 + n_features]).sum()
            return F.linear(_with_time(t, x), w, b), trace.expand(n_rows)
        h = _with_time(t, x)
        grads = []
        for w, b in layers[:-1]:
            h, g = self.act_and_grad(F.linear(h, w, b))
            grads.append(g)
        w, b = layers[-1]
        velocity = F.linear(h, w, b)
        if self.n_hidden == 1:
            return velocity, grads[0] @ self.trace_vec
        if self.n_hidden == 2:
            return velocity, ((grads[0] @ self.trace_mat) * grads[1]).sum(dim=1)
        # tangent[b, i, :] = d a_1 / d x_i (pre-activation of hidden layer 1).
        # Every tangent is a fresh matmul result, so D_k is applied in place.
        tangent = (grads[0] @ self.first).view(n_rows, n_features, -1)
        for k in range(1, self.n_hidden - 2):
            w = layers[k + 1][0]
            tangent = tangent.mul_(grads[k].unsqueeze(1)).view(-1, w.shape[1]) @ w.T
            tangent = tangent.view(n_rows, n_features, -1)
        tangent = tangent.mul_(grads[-2].unsqueeze(1))
        divergence = ((tangent.view(n_rows, -1) @ self.last) * grads[-1]).sum(dim=1)
        return velocity, divergence
