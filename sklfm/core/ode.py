"""Fixed-step explicit Runge-Kutta solvers and the exact log-determinant of a flow.

Fixed steps (not adaptive ones) keep every row's result independent of the
other rows in its batch, so scoring a row alone or in a batch gives the same
value, and a forward solve followed by a backward one is reproducible.
"""

import torch

# Butcher tableaus: (stage coefficients a, weights b, nodes c).
_TABLEAUS = {
    "euler": ((), (1.0,), (0.0,)),
    "midpoint": (((0.5,),), (0.0, 1.0), (0.0, 0.5)),
    "rk4": (
        ((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        (1 / 6, 1 / 3, 1 / 3, 1 / 6),
        (0.0, 0.5, 0.5, 1.0),
    ),
}

SOLVERS = tuple(_TABLEAUS)


def _combine(state, dt, coefficients, slopes):
    out = []
    for i, s in enumerate(state):
        acc = s
        for c, k in zip(coefficients, slopes):
            if c:
                acc = acc + (dt * c) * k[i]
        out.append(acc)
    return tuple(out)


def odeint(func, state, t0, t1, n_steps, method="rk4"):
    """Integrate d state / dt = func(t, state) from t0 to t1 in `n_steps` equal steps.

    `state` is a tuple of tensors and `func` returns a tuple of the same shapes;
    `t` is passed as a (1, 1) tensor of the first state's dtype and device.
    """
    a, b, c = _TABLEAUS[method]
    ref = state[0]
    dt = (t1 - t0) / n_steps
    for step in range(n_steps):
        t = t0 + step * dt
        slopes = []
        for stage in range(len(b)):
            coeffs = a[stage - 1] if stage else ()
            stage_state = _combine(state, dt, coeffs, slopes)
            time = torch.full((1, 1), t + c[stage] * dt, dtype=ref.dtype, device=ref.device)
            slopes.append(func(time, stage_state))
        state = _combine(state, dt, b, slopes)
    return state


def flow(velocity, x, t0, t1, n_steps, method="rk4"):
    """Transport x along velocity(t, x) from t0 to t1."""
    (x,) = odeint(lambda t, s: (velocity(t, s[0]),), (x,), t0, t1, n_steps, method)
    return x


def flow_with_logdet(velocity_and_divergence, x, t0, t1, n_steps, method="rk4"):
    """Transport x from t0 to t1 and integrate the divergence along the path.

    Returns (x(t1), integral of trace(dv/dx) dt); with t0 = 0, t1 = 1 the
    integral is log |det d x(1) / d x(0)|.
    """

    def func(t, s):
        return velocity_and_divergence(t, s[0])

    zero = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    return odeint(func, (x, zero), t0, t1, n_steps, method)
