"""Speed and memory of the MNIST transfer experiment, printed as ratios measured in one run.

    uv run python benchmarks/mnist_speed.py --data-dir DIR          # 10 seeds, ~10 min, 2-core CPU
    uv run python benchmarks/mnist_speed.py --data-dir DIR --torch-python /torch-venv/bin/python
    uv run python benchmarks/mnist_speed.py --seeds 2 --skip-memory --skip-sweep  # ~1 min

Prints: (1) the fp32 matmul peak of this machine, measured here with a jitted 2048² matmul;
(2) achieved FLOP/s of one teacher epoch and one student epoch for ``--seeds`` vmapped seeds, and
their ratio to the peak, counting the matmul FLOPs XLA executes (`mlp.train_flops`: forward +
backward without the gradient of the input images, 2.26× the forward for 784-256-256-13, checked
against XLA's cost analysis in tests/test_mlp.py) and, for comparison with the issue's targets,
in the 3×-forward convention (which counts a first-layer input gradient nobody computes, 1.33×
more); (3) the same epoch as a Python loop over seeds (one jitted single-seed call each) vs
the vmapped one; (4) noise: drawing one epoch of noise for the seeds vs a student epoch;
(5) wall time and peak host memory (VmHWM of a fresh process running the CLI) at ``--seeds``
with the default epochs, and peak memory at 100 seeds with 0 epochs (noise, teacher logits,
evaluation and the host copy of all 100 teachers: everything but training, whose buffers are
per chunk and small); (6) with ``--torch-python``, the same wall time and memory for the
original's computation re-implemented in PyTorch (`mnist_torch_reference.py`), in this run.
(7) a sweep's throughput: an ``init-distance`` sweep (``--sweep-points`` points of one shape, so
one compiled program; 1 student epoch, untrained teachers: the teacher phase is not per point)
timed at 1 point and at P points; the difference gives seconds per added point, its points/s
and FLOP/s (the four students' `mlp.train_flops`) over the same measured matmul peak.
``--out FILE`` also saves the report, with the software versions, as JSON.

Why the noise is drawn once and stored as uint16 (transfer.make_noise): on CPU drawing is
slow. Measured here (2-core CPU, 5 seeds, uncontended): drawing one epoch of noise for the
models costs 0.15× the four students' epoch on it (the uint16 draws are cheaper than the
~14 ns per float32 number quoted in the issue), so regenerating it every epoch would add ~15%
to the students' time, or 60% if each student drew its own. Stored as uint16 draws it is 94 MB
per model, the runner keeps one chunk of models (5 on CPU) at a time, so memory is bounded at
any seed count, and the decode per batch is one fused elementwise op. On a GPU drawing is
cheap, but storing is cheap too (9.4 GB for 100 models), so one code path serves both.
The latest run's report (2-core CPU, 10 seeds, with --torch-python), quoted in docs/benchmarks.md,
is saved in ``benchmarks/results/mnist_speed_cpu_10seeds.json``. Two such runs on this
shared machine, the same day: by the executed count training ran at 0.54–0.71 of the matmul
peak, i.e. 0.72–0.95 in the 3×-forward convention the issue's 80% target was stated in (the
machine's other load moves it); a Python loop over seeds took 0.82–0.94× the vmapped time on CPU
(each seed's matmuls already saturate the cores, so vmap's gain is on accelerators and in the
sharded seed axis); peak memory is nearly flat in the seed count.
The teacher's logits on the noise are computed once per model (a forward pass, ~1% of the
students' FLOPs) and shared by its four students and all epochs.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from sublim_jax.core import mlp
from sublim_jax.experiments.mnist import config
from sublim_jax.experiments.mnist import steps as transfer
from sublim_jax.experiments.sweeps import grid as sweeps
from sublim_jax.experiments.sweeps import run as sweep_run
from sublim_jax.io import results

REPEATS = 5
# The authors' script, all six conditions at 10 models, on a 2-core CPU machine of the kind we
# develop on (measured for the issue; it executes 3.07e13 FLOPs in the 3x-forward convention).
ORIGINAL_S_AT_10 = 194.0


def best_time(fn, *args, repeats: int = REPEATS) -> float:
    """Fastest of ``repeats`` timed calls after one warm-up (the machine is shared: noise is +)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(n: int = 2048) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    return 2 * n**3 / best_time(jax.jit(lambda a, b: a @ b), a, a, repeats=10)


def epoch_flops(cfg: config.TransferConfig, n: int, models: int) -> float:
    """Matmul FLOPs one epoch executes (`mlp.train_flops`: no gradient for the input images)."""
    return float(mlp.train_flops(cfg.sizes)) * n * models


def teacher_epoch_rate(cfg, S: int, x, y) -> tuple[float, float]:
    """(vmapped seconds, looped seconds) for one teacher epoch of S seeds."""
    epoch, _ = transfer.make_train_teacher(cfg)
    keys = jax.random.split(jax.random.key(1), S)
    states = jax.vmap(lambda k: transfer.init_state(cfg, key=k))(keys)
    vmapped = jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, None, None)))
    t_vmap = best_time(vmapped, states, keys, 0, x, y, repeats=2)
    single = jax.jit(epoch)
    one = [jax.tree.map(lambda a, i=i: a[i], states) for i in range(S)]

    def loop():
        return [single(one[i], keys[i], 0, x, y) for i in range(S)]

    t_loop = best_time(loop, repeats=2)
    return t_vmap, t_loop


def student_epoch_rate(cfg, S: int) -> tuple[float, float]:
    """(seconds of one epoch of S models' four students, seconds to draw their noise)."""
    epoch, _ = transfer.make_distill(cfg)
    keys = jax.random.split(jax.random.key(2), S)
    noise = jax.jit(jax.vmap(lambda k: transfer.make_noise(cfg, key=k)))
    t_noise = best_time(noise, keys, repeats=2)
    u = noise(keys)
    y = jax.random.normal(keys[0], (S, u.shape[1], cfg.sizes[-1]), jnp.float32)
    init = lambda same, diff: transfer.init_students(cfg, same_key=same, diff_key=diff)  # noqa: E731
    states = jax.vmap(init)(keys, keys[::-1])
    vmapped = jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, 0, 0)))
    return best_time(vmapped, states, keys, 0, u, y, repeats=2), t_noise


def sweep_rate(cfg, points: int, x, y) -> tuple[float, float]:
    """(seconds of a 1-point, of a ``points``-point init-distance sweep), one shape, warmed."""
    grid = ",".join(f"{0.1 * (i + 1):g}" for i in range(points))
    x_test, y_test = x[:10_000], y[:10_000]

    def run(text: str) -> float:
        start = time.perf_counter()
        sweep_run.run(
            "init-distance", sweeps.parse_grid("init-distance", text), cfg, x, y, x_test, y_test
        )
        return time.perf_counter() - start

    run("0")  # compiles every program the points share
    return run("0"), run(grid)


def cli_run(seeds: int, epochs: int | None, data_dir: str | None) -> tuple[float, float]:
    """(max RSS in GB, wall seconds from start to exit) of a fresh process running
    ``sublim-jax mnist --seeds SEEDS`` (the default preset's epochs unless ``epochs`` is given):
    imports, data loading and checksums, compilation, training, evaluation, files and figure."""
    # VmHWM, not getrusage: Linux carries ru_maxrss across fork + exec, so a child's ru_maxrss
    # is at least this (large) benchmark process's RSS when it forked.
    code = (
        "import re, sys; from sublim_jax import cli; rc = cli.main(sys.argv[1:]); "
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]); "
        "sys.exit(rc)"
    )
    with tempfile.TemporaryDirectory() as out:
        argv = ["mnist", "--seeds", str(seeds), "--out", out]
        if epochs is not None:
            argv += ["--epochs-teacher", str(epochs), "--epochs-student", str(epochs)]
        argv += ["--data-dir", data_dir] if data_dir else []
        env = {**os.environ, "TQDM_DISABLE": "1"}
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, check=True
        )
        wall = time.perf_counter() - start
    return int(done.stdout.strip().splitlines()[-1]) / 2**20, wall


def torch_reference_run(python: str, models: int, data_dir: str) -> tuple[float, dict]:
    """(wall seconds from start to exit, its report) of `mnist_torch_reference.py` under
    ``python`` (an interpreter with torch): the original's computation, timed like `cli_run`."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist_torch_reference.py")
    start = time.perf_counter()
    done = subprocess.run(
        [python, script, "--models", str(models), "--data-dir", data_dir],
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--data-dir", default=None, help="MNIST folder for the memory runs")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--torch-python",
        metavar="PYTHON",
        help="an interpreter with torch: also time the original's computation "
        "(mnist_torch_reference.py) at --seeds models, in this run (needs --data-dir)",
    )
    parser.add_argument("--out", metavar="FILE", help="also write the report as JSON (atomically)")
    parser.add_argument("--sweep-points", type=int, default=3, help="points of the timed sweep")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    if args.torch_python and (args.skip_memory or not args.data_dir):
        parser.error("--torch-python needs --data-dir and the end-to-end run (no --skip-memory)")
    if args.sweep_points < 2:
        parser.error("--sweep-points must be ≥ 2 (the rate is the difference to 1 point)")
    if args.torch_python and not os.access(args.torch_python, os.X_OK):
        parser.error(f"--torch-python {args.torch_python!r} is not an executable interpreter")
    cfg = dataclasses.replace(config.TransferConfig(), seeds=args.seeds)
    S, report = args.seeds, {"backend": jax.default_backend(), "seeds": args.seeds}

    peak_before = matmul_peak()
    x = jax.random.uniform(jax.random.key(3), (cfg.n_train, 784), jnp.float32, -1.0, 1.0)
    y = jax.random.randint(jax.random.key(4), (cfg.n_train,), 0, 10, jnp.int32)
    t_teacher, t_loop = teacher_epoch_rate(cfg, S, x, y)
    t_student, t_noise = student_epoch_rate(cfg, S)
    peak = max(peak_before, matmul_peak())
    rate_T = epoch_flops(cfg, cfg.n_train, S) / t_teacher
    rate_S = epoch_flops(cfg, cfg.n_noise, 4 * S) / t_student
    # The targets (and the original's ~160 GFLOP/s) count 3 x forward FLOPs per example;
    # the executed count (`mlp.train_flops`) skips the input gradient and is 0.75 of that.
    nominal = 3 * mlp.matmul_flops(cfg.sizes) / mlp.train_flops(cfg.sizes)
    per_seed = cfg.epochs_teacher * epoch_flops(cfg, cfg.n_train, 1)
    per_seed += cfg.epochs_student * epoch_flops(cfg, cfg.n_noise, 4)
    report |= {
        "train_tflops_per_seed": per_seed / 1e12,
        "matmul_peak_gflops": peak / 1e9,
        "teacher_gflops": rate_T / 1e9,
        "teacher_over_peak": rate_T / peak,
        "teacher_over_peak_3x_convention": nominal * rate_T / peak,
        "student_gflops": rate_S / 1e9,
        "student_over_peak": rate_S / peak,
        "student_over_peak_3x_convention": nominal * rate_S / peak,
        "loop_over_vmap_time": t_loop / t_teacher,
        "noise_draw_over_student_epoch": t_noise / t_student,
        "teacher_epoch_s": t_teacher,
        "student_epoch_s": t_student,
    }
    if not args.skip_sweep:
        P = args.sweep_points
        cfg_sweep = dataclasses.replace(cfg, epochs_teacher=0, epochs_student=1)
        t_1, t_P = sweep_rate(cfg_sweep, P, np.asarray(x), np.asarray(y))
        per_point = (t_P - t_1) / (P - 1)
        rate = epoch_flops(cfg_sweep, cfg_sweep.n_noise, 4 * S) / per_point
        report |= {
            "sweep_s_per_point": per_point,
            "sweep_points_per_s": 1 / per_point,
            "sweep_points_per_s_end_to_end": P / t_P,
            "sweep_gflops": rate / 1e9,
            "sweep_over_peak": rate / peak,
        }
    if not args.skip_memory:
        rss, wall = cli_run(S, None, args.data_dir)
        report["end_to_end_wall_s_at_seeds"] = wall
        if S == 10:
            report["original_194s_over_ours"] = ORIGINAL_S_AT_10 / wall
        report["peak_rss_gb_at_seeds"] = rss
        report["peak_rss_gb_at_100_seeds_0_epochs"] = cli_run(100, 0, args.data_dir)[0]
    if args.torch_python:
        wall_torch, torch_report = torch_reference_run(args.torch_python, S, args.data_dir)
        report["torch_reference_wall_s"] = wall_torch
        report["torch_reference_over_ours"] = wall_torch / report["end_to_end_wall_s_at_seeds"]
        report["torch_reference_peak_rss_gb"] = torch_report["peak_rss_gb"]
        report["torch_reference_accuracy"] = torch_report["accuracy"]  # it learns: a sanity check
    for k, v in report.items():
        print(f"{k:34s} {v:.3f}" if isinstance(v, float) else f"{k:34s} {v}")
    print(json.dumps(results.jsonable(report)))
    if args.out:
        results.write_json(args.out, report | {"versions": results.versions()})


if __name__ == "__main__":
    main()
