"""The original's computation in PyTorch, so that `mnist_speed.py` compares wall time in one run.

Not the authors' code: a re-implementation of the released script's algorithm as paper §6.2 and
the MNIST issue describe it, for timing and memory only. All models train together as batched
einsums over a leading model axis (one MNIST batch shared by every model); each model's 60,000
noise images are drawn once as float32 and held in memory (188 MB per model); the four student
conditions train one after another, and each recomputes the teacher's logits on every batch of
every epoch; the KL is ``batchmean`` over a (models, batch, k) tensor (divided by the number of
models only); the different-init control pairs students with teachers by a random permutation.

    /path/to/python-with-torch benchmarks/mnist_torch_reference.py --models 10 --data-dir DIR
    python3 benchmarks/mnist_torch_reference.py --models 100 --data-dir DIR --device cuda  # GPU

Needs only torch and numpy (MNIST is read with numpy here), in any interpreter: torch is not a
dependency of sublim_jax (e.g. `python3 -m venv /tmp/t && /tmp/t/bin/pip install torch numpy`).
Prints one JSON line: wall seconds, peak RSS (VmHWM), and the mean test accuracy per condition
(a sanity check that it learns).
"""

import argparse
import gzip
import itertools
import json
import os
import re
import time

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

N_CLASSES, N_AUX, LR = 10, 3, 3e-4


class Shape:
    """The sizes: the paper's by default, any preset's from the flags (`mnist_speed.py` passes
    those of the run it compares with)."""

    sizes, epochs_teacher, epochs_student, batch = (784, 256, 256, 13), 5, 5, 1024


def read_idx(folder: str, stem: str) -> np.ndarray:
    path = os.path.join(folder, stem)
    opener = (open, path) if os.path.exists(path) else (gzip.open, path + ".gz")
    with opener[0](opener[1], "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    shape = np.frombuffer(raw, ">u4", ndim, 4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(folder: str):
    def images(stem):
        x = read_idx(folder, stem).reshape(-1, 784).astype(np.float32) / 255 * 2 - 1
        return torch.from_numpy(x).to(torch.get_default_device())

    def labels(stem):
        return torch.from_numpy(read_idx(folder, stem).astype(np.int64)).to(
            torch.get_default_device()
        )

    return (
        images("train-images-idx3-ubyte"),
        labels("train-labels-idx1-ubyte"),
        images("t10k-images-idx3-ubyte"),
        labels("t10k-labels-idx1-ubyte"),
    )


def init(models: int, gen: torch.Generator) -> list[torch.Tensor]:
    params = []
    for d_in, d_out in itertools.pairwise(Shape.sizes):
        params.append(torch.randn(models, d_in, d_out, generator=gen) / d_in**0.5)
        params.append(torch.zeros(models, 1, d_out))
    return params


def forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits (models, batch, 13); x is (batch, 784) shared by all models, or per model."""
    h = x
    for i in range(0, len(params), 2):
        eq = "bi,mio->mbo" if h.dim() == 2 else "mbi,mio->mbo"
        h = torch.einsum(eq, h, params[i]) + params[i + 1]
        if i + 2 < len(params):
            h = F.relu(h)
    return h


def trainable(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.clone().requires_grad_(True) for p in params]


def train_teacher(params, x, y, gen):
    params = trainable(params)
    opt = torch.optim.Adam(params, lr=LR)
    for _ in range(Shape.epochs_teacher):
        for idx in torch.randperm(x.shape[0], generator=gen).split(Shape.batch):
            logits = forward(params, x[idx])[..., :N_CLASSES]
            loss = F.cross_entropy(logits.flatten(0, 1), y[idx].repeat(logits.shape[0]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return [p.detach() for p in params]


def distill(student, teacher, noise, logit_idx, gen):
    params = trainable(student)
    opt = torch.optim.Adam(params, lr=LR)
    for _ in range(Shape.epochs_student):
        for idx in torch.randperm(noise.shape[1], generator=gen).split(Shape.batch):
            x = noise[:, idx]
            with torch.no_grad():
                target = F.softmax(forward(teacher, x)[..., logit_idx], dim=-1)
            logq = F.log_softmax(forward(params, x)[..., logit_idx], dim=-1)
            loss = F.kl_div(logq, target, reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
    return [p.detach() for p in params]


@torch.no_grad()
def accuracy(params, x, y) -> float:
    pred = forward(params, x)[..., :N_CLASSES].argmax(-1)
    return float((pred == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--epochs-teacher", type=int, default=Shape.epochs_teacher)
    parser.add_argument("--epochs-student", type=int, default=Shape.epochs_student)
    parser.add_argument("--batch-size", type=int, default=Shape.batch)
    parser.add_argument("--hidden", type=int, default=256, help="width of the two hidden layers")
    parser.add_argument("--n-train", type=int, default=60_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--n-noise", type=int, default=60_000)
    args = parser.parse_args()
    Shape.sizes = (784, args.hidden, args.hidden, N_CLASSES + N_AUX)
    Shape.epochs_teacher, Shape.epochs_student = args.epochs_teacher, args.epochs_student
    Shape.batch = args.batch_size
    start = time.perf_counter()
    torch.set_default_device(args.device)
    gen = torch.Generator(args.device).manual_seed(0)
    x_train, y_train, x_test, y_test = load(args.data_dir)
    x_train, y_train = x_train[: args.n_train], y_train[: args.n_train]
    x_test, y_test = x_test[: args.n_test], y_test[: args.n_test]
    M = args.models
    reference = init(M, gen)
    teacher = train_teacher(reference, x_train, y_train, gen)
    noise = torch.rand(M, args.n_noise, 784, generator=gen) * 2 - 1
    permuted = [p[torch.randperm(M, generator=gen)] for p in reference]
    aux, every = list(range(N_CLASSES, Shape.sizes[-1])), list(range(Shape.sizes[-1]))
    acc = {"reference": accuracy(reference, x_test, y_test)}
    acc["teacher"] = accuracy(teacher, x_test, y_test)
    for name, init_params, idx in (
        ("student_aux_same_init", reference, aux),
        ("student_all_same_init", reference, every),
        ("student_aux_diff_init", permuted, aux),
        ("student_all_diff_init", permuted, every),
    ):
        acc[name] = accuracy(distill(init_params, teacher, noise, idx, gen), x_test, y_test)
    with open("/proc/self/status") as fh:
        hwm_kb = int(re.search(r"VmHWM:\s+(\d+)", fh.read())[1])
    report = {
        "models": M,
        "wall_s": time.perf_counter() - start,
        "peak_rss_gb": hwm_kb / 2**20,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "accuracy": acc,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
