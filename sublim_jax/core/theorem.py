"""Every quantity of the single-gradient-step theorem (paper §6.1 and App. C).

Symbols are the paper's: ``theta0_T``/``theta0_S`` the inits, ``delta_theta_T``/``delta_theta_S``
the update directions, ``eps`` the teacher's step, ``alpha`` the student's, ``M`` the output-space
matrix, ``A`` the first-order coefficient. Parameters are any pytree. ``f(theta, x_BxD) -> z_BxC``
is the network, ``L_S(z_C, y_C)`` a per-example output loss (``sublim_jax.core.losses``) and
``L_T(theta)`` any differentiable teacher objective. Dims: B inputs, D features, C outputs.
The written proof, step by step against these functions, is ``proofs/single_step.md``.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Params = Any
Network = Callable[[Params, jax.Array], jax.Array]
OutputLoss = Callable[[jax.Array, jax.Array], jax.Array]
TeacherLoss = Callable[[Params], jax.Array]


def tree_dot(a: Params, b: Params) -> jax.Array:
    """Euclidean inner product of two parameter pytrees."""
    leaves = jax.tree.leaves(jax.tree.map(lambda u, v: jnp.vdot(u, v), a, b))
    return sum(leaves[1:], leaves[0])


def tree_axpy(eps: jax.Array | float, direction: Params, theta: Params) -> Params:
    """theta + eps · direction."""
    return jax.tree.map(lambda d, t: t + jnp.asarray(eps, t.dtype) * d, direction, theta)


def teacher_direction(L_T: TeacherLoss, theta0_T: Params) -> Params:
    """Δθ_T = −∇_θ L_T(θ⁰_T) for any differentiable L_T (paper §6.1, setup)."""
    return jax.tree.map(jnp.negative, jax.grad(L_T)(theta0_T))


def teacher_params(theta0_T: Params, delta_theta_T: Params, eps: jax.Array | float) -> Params:
    """θ_T = θ⁰_T + ε·Δθ_T."""
    return tree_axpy(eps, delta_theta_T, theta0_T)


def student_objective(
    theta: Params, theta_T: Params, f: Network, L_S: OutputLoss, x_BxD: jax.Array
) -> jax.Array:
    """E_x[L_S(f_θ(x), y(x))] with labels y(x) = f_{θ_T}(x) (full output vectors)."""
    y_BxC = jax.lax.stop_gradient(f(theta_T, x_BxD))
    return jnp.mean(jax.vmap(L_S)(f(theta, x_BxD), y_BxC))


def student_direction(
    f: Network, L_S: OutputLoss, theta0_S: Params, theta_T: Params, x_BxD: jax.Array
) -> Params:
    """Δθ_S = −∇_θ E_x[L_S(f_θ(x), f_{θ_T}(x))] at θ = θ⁰_S; the student step is θ⁰_S + αΔθ_S."""
    grads = jax.grad(student_objective)(theta0_S, theta_T, f, L_S, x_BxD)
    return jax.tree.map(jnp.negative, grads)


def alignment(delta_theta_S: Params, delta_theta_T: Params) -> jax.Array:
    """Δθ_S · Δθ_T, the quantity the theorem signs."""
    return tree_dot(delta_theta_S, delta_theta_T)


def cosine(delta_theta_S: Params, delta_theta_T: Params) -> jax.Array:
    """cos∠(Δθ_S, Δθ_T); 0 where either direction vanishes."""
    sq_S, sq_T = tree_dot(delta_theta_S, delta_theta_S), tree_dot(delta_theta_T, delta_theta_T)
    norms = jnp.sqrt(sq_S * sq_T)
    dot = tree_dot(delta_theta_S, delta_theta_T)
    return jnp.where(norms > 0, dot / jnp.where(norms > 0, norms, 1), 0)


def output_direction(
    f: Network, theta0: Params, delta_theta_T: Params, x_BxD: jax.Array
) -> jax.Array:
    """u(x) = J(x)·Δθ_T, J = ∂f/∂θ at θ⁰: a Jacobian-vector product, shape B×C."""
    _, u_BxC = jax.jvp(lambda theta: f(theta, x_BxD), (theta0,), (delta_theta_T,))
    return u_BxC


def alignment_via_outputs(
    f: Network,
    L_S: OutputLoss,
    theta0_S: Params,
    theta_T: Params,
    delta_theta_T: Params,
    x_BxD: jax.Array,
) -> jax.Array:
    """Proof step 1, exact: Δθ_S·Δθ_T = −E_x[Σ_i ∂L_S/∂z_i(f_S(x), y(x)) · (J Δθ_T)_i(x)].

    Computed in output space (a vjp-free JVP and ∂L_S/∂z), independently of ``student_direction``.
    """
    y_BxC = f(theta_T, x_BxD)
    z_BxC = f(theta0_S, x_BxD)
    dL_dz_BxC = jax.vmap(jax.grad(L_S, argnums=0))(z_BxC, y_BxC)
    u_BxC = output_direction(f, theta0_S, delta_theta_T, x_BxD)
    return -jnp.mean(jnp.sum(dL_dz_BxC * u_BxC, axis=-1))


def output_hessian(L_S: OutputLoss, y_C: jax.Array) -> jax.Array:
    """M_ij = −∂²L_S/∂y_j∂z_i at (z, y) = (y, y), by autodiff, for any L_S (proof step 2)."""
    d2L_dy_dz_CxC = jax.jacfwd(jax.grad(L_S, argnums=0), argnums=1)(y_C, y_C)
    return -d2L_dy_dz_CxC


def output_hessian_squared_error(w_C: jax.Array) -> jax.Array:
    """Closed form for L_S = Σ w_i (z_i − y_i)²: M = 2·diag(w) (proof step 4)."""
    return 2 * jnp.diag(w_C)


def output_hessian_softmax_ce(
    y_C: jax.Array, temperature: float = 1.0, indices: jax.Array | None = None
) -> jax.Array:
    """Closed form for softmax CE at temperature T: M = (diag(p) − p pᵀ)/T², p = softmax(y/T).

    With ``indices`` (CE on a fixed subset K of the logits) p = softmax(y_K/T) and M is that block
    embedded in a C×C zero matrix: outputs outside K do not enter L_S (proofs, §"subset").
    """
    idx_K = jnp.arange(y_C.shape[-1]) if indices is None else jnp.asarray(indices)
    p_K = jax.nn.softmax(y_C[idx_K] / temperature)
    block_KxK = (jnp.diag(p_K) - jnp.outer(p_K, p_K)) / temperature**2
    M_CxC = jnp.zeros((y_C.shape[-1], y_C.shape[-1]), y_C.dtype)
    return M_CxC.at[idx_K[:, None], idx_K[None, :]].set(block_KxK)


def first_order_coefficient(
    f: Network, L_S: OutputLoss, theta0: Params, delta_theta_T: Params, x_BxD: jax.Array
) -> jax.Array:
    """A = E_x[(JΔθ_T)ᵀ M(x) (JΔθ_T)] (proof step 3): Δθ_S·Δθ_T = εA + O(ε²) under shared init.

    From a JVP and the autodiff M at y = f_θ⁰(x), never by differentiating the alignment.
    """
    y_BxC = f(theta0, x_BxD)
    M_BxCxC = jax.vmap(lambda y_C: output_hessian(L_S, y_C))(y_BxC)
    u_BxC = output_direction(f, theta0, delta_theta_T, x_BxD)
    return jnp.mean(jnp.einsum("bi,bij,bj->b", u_BxC, M_BxCxC, u_BxC))


def teacher_loss_change(
    L_T: TeacherLoss, theta0_S: Params, delta_theta_S: Params, alpha: jax.Array | float
) -> jax.Array:
    """L_T(θ⁰_S + αΔθ_S) − L_T(θ⁰_S); ≈ −εαA < 0 under shared init (proof step 5)."""
    return L_T(tree_axpy(alpha, delta_theta_S, theta0_S)) - L_T(theta0_S)


class OneStep(NamedTuple):
    """The theorem's quantities for one (θ⁰_T, θ⁰_S, ε, α)."""

    alignment: jax.Array
    cosine: jax.Array
    lt_change: jax.Array


def one_step(
    f: Network,
    L_S: OutputLoss,
    L_T: TeacherLoss,
    theta0_T: Params,
    theta0_S: Params,
    x_BxD: jax.Array,
    eps: jax.Array | float,
    alpha: jax.Array | float,
) -> OneStep:
    """Teacher step ε on L_T from θ⁰_T, one student step α on its outputs from θ⁰_S.

    Shared vs different init is only which θ⁰_S the caller passes.
    """
    delta_theta_T = teacher_direction(L_T, theta0_T)
    theta_T = teacher_params(theta0_T, delta_theta_T, eps)
    delta_theta_S = student_direction(f, L_S, theta0_S, theta_T, x_BxD)
    return OneStep(
        alignment=alignment(delta_theta_S, delta_theta_T),
        cosine=cosine(delta_theta_S, delta_theta_T),
        lt_change=teacher_loss_change(L_T, theta0_S, delta_theta_S, alpha),
    )
