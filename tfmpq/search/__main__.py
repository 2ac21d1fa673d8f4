"""Command line for a search run: ``python -m tfmpq.search nsga2 ...`` (reproduces reported runs).

Examples::

    python -m tfmpq.search nsga2 --model zoo:small_cnn_fmnist --data default --num-train 3000 \\
        --evaluation qat --epochs 1 --population 10 --offspring 10 --generations 3 \\
        --run-dir runs/fmnist --seed 0
    python -m tfmpq.search exhaustive --model zoo:small_cnn_fmnist --evaluation ptq --bits 2 4 8
    python -m tfmpq.search nsga2 ... --resume          # continue a killed run
"""
from __future__ import annotations

import argparse
import time


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfmpq.search", description=__doc__.splitlines()[0])
    p.add_argument("strategy", choices=("nsga2", "exhaustive"))
    p.add_argument("--model", default="zoo:small_cnn_fmnist",
                   help="zoo:NAME, a .keras/.h5 file (tf_keras or Keras 3) or a SavedModel folder (tfmpq.zoo.resolve_model)")
    p.add_argument("--data", default="default", help="a tfmpq.data name or path (tfmpq.data.load)")
    p.add_argument("--num-train", type=int, default=None, help="class-balanced training subset")
    p.add_argument("--val", default="split",
                   help="validation data: 'split', the fixed validation split of the training data "
                        "(tfmpq.data.roles). The test split is never used to score or choose.")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of training data for --val split")
    p.add_argument("--evaluation", choices=("qat", "ptq"), default="qat")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--offspring", type=int, default=16)
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4, 5, 6, 7, 8])
    p.add_argument("--pin-first-last", action="store_true")
    p.add_argument("--objective", default="weight_bytes", help="the cost: weight_bytes or bops")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--finetune", type=int, default=0, help="QAT epochs to fine-tune the front afterwards")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument("--executor", choices=("serial", "process", "ray"), default="serial",
                   help="where candidates are evaluated (tfmpq.search.executors)")
    p.add_argument("--workers", type=int, default=None, help="worker processes / Ray actors")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: a local Ray)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor")
    return p


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.val != "split":
        parser.error(f"--val {args.val} is refused: the test split is for reporting only; candidates are scored "
                     "on the fixed validation split of the training data (--val split, the default)")
    from tfmpq import data, search, zoo

    roles = data.roles(data.load(args.data), val_fraction=args.val_fraction, num_train=args.num_train,
                       seed=args.seed)
    train, val = roles.train, roles.val
    model = zoo.resolve_model(args.model)
    kwargs = dict(
        evaluation=args.evaluation, epochs=args.epochs, learning_rate=args.learning_rate,
        batch_size=args.batch_size, bits=tuple(args.bits), pin_first_last=args.pin_first_last,
        objectives=("accuracy", args.objective), run_dir=args.run_dir, resume=args.resume,
        overwrite=args.overwrite, seed=args.seed, verbose=args.verbose, executor=args.executor,
        workers=args.workers, ray_address=args.ray_address, gpus_per_worker=args.gpus_per_worker,
    )
    start = time.perf_counter()
    if args.strategy == "nsga2":
        result = search.nsga2(model, train, val, population=args.population, offspring=args.offspring,
                              generations=args.generations, **kwargs)
    else:
        result = search.exhaustive(model, train, val, **kwargs)
    print(f"search wall time: {time.perf_counter() - start:.1f} s "
          f"({result.num_evaluated} evaluated here, {result.num_cached} cache hits)")
    if args.finetune:
        tuned = result.finetune(args.finetune)
        for c in tuned:
            print(f"fine-tuned {c.genes}: {100 * c.accuracy:.2f}%" if c.ok else f"fine-tune of {c.genes} failed")


if __name__ == "__main__":
    main()
