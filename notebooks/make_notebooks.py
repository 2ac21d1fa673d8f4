"""Writes the tfmpq tutorial notebooks (notebooks/*.ipynb) from the cells below, without outputs.

The notebooks are generated so that they stay reproducible and diffable: edit this file, then run
``python notebooks/make_notebooks.py`` and commit the .ipynb files it rewrites. Each notebook reads
``TFMPQ_NOTEBOOK_SMALL=1`` (set by CI, ``make notebooks``) to run with tiny settings in well under two
minutes on two CPU cores; the defaults are realistic settings for Colab.

Every notebook starts with the same install cell: on Colab (or any Python with TensorFlow 2.16-2.21)
it installs tfmpq from a wheel built by ``make wheel`` and uploaded next to the notebook, else from
:data:`REPOSITORY`, together with the tf-keras that matches the TensorFlow already installed.

Usage: python notebooks/make_notebooks.py [--check]   (--check: fail if a notebook is out of date)
"""
from __future__ import annotations

import argparse
import os
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))

# tfmpq's git repository, as pip takes it ("git+https://HOST/OWNER/tfmpq.git"), written at the top of
# every notebook's install cell. Empty: the notebooks install only a wheel uploaded next to them.
REPOSITORY = ""

INSTALL = '''\
TFMPQ_REPOSITORY = "{repository}"  # tfmpq's git repository (pip's "git+https://..." form)

# Installs tfmpq where it is missing (Colab): from a wheel built by `make wheel` and uploaded next to this
# notebook if there is one, else from TFMPQ_REPOSITORY. tf-keras (the Keras 2 that tfmpq's QAT models need)
# must match TensorFlow's minor version, and Colab's TensorFlow is not ours to choose: it is pinned to it.
import glob
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("tfmpq") is None:
    import tensorflow as tf

    tf_minor = ".".join(tf.__version__.split(".")[:2])
    wheels = sorted(glob.glob("tfmpq-*.whl"))
    if wheels:
        source = f"{{wheels[-1]}}[deploy,search]"
    elif TFMPQ_REPOSITORY:
        source = f"tfmpq[deploy,search] @ {{TFMPQ_REPOSITORY}}"
    else:
        raise RuntimeError("Upload a tfmpq wheel (`make wheel` writes dist/tfmpq-*.whl) next to this notebook, "
                           "or set TFMPQ_REPOSITORY to tfmpq's git repository.")
    print(f"installing {{source}} and tf-keras~={{tf_minor}}.0 (TensorFlow {{tf.__version__}})")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", source, f"tf-keras~={{tf_minor}}.0"])'''.format(
    repository=REPOSITORY)

SETUP = '''\
import os
import tempfile

import numpy as np
import tf_keras  # Keras 2: tfmpq's QAT models are tf_keras models (tensorflow-model-optimization needs it)

import tfmpq
from tfmpq import data, zoo

# CI sets TFMPQ_NOTEBOOK_SMALL=1: tiny settings that only check the notebook runs.
SMALL = os.environ.get("TFMPQ_NOTEBOOK_SMALL") == "1"
OUT = tempfile.mkdtemp(prefix="tfmpq-") if SMALL else "tfmpq_out"
os.makedirs(OUT, exist_ok=True)
tf_keras.utils.set_random_seed(0)
print(f"tfmpq {tfmpq.__version__}, {'small (CI) settings' if SMALL else 'full settings'}, outputs in {OUT}")'''

# Notebook 1 builds the user's own model, so it does what a Colab user does: TensorFlow and Keras 3 first.
SETUP_KERAS3 = '''\
import os
import tempfile

import numpy as np
import tensorflow as tf
import keras  # Keras 3, the Keras of TensorFlow >= 2.16 and of Colab: your model is built with it

# CI sets TFMPQ_NOTEBOOK_SMALL=1: tiny settings that only check the notebook runs.
SMALL = os.environ.get("TFMPQ_NOTEBOOK_SMALL") == "1"
OUT = tempfile.mkdtemp(prefix="tfmpq-") if SMALL else "tfmpq_out"
os.makedirs(OUT, exist_ok=True)
keras.utils.set_random_seed(0)
print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
      f"{'small (CI) settings' if SMALL else 'full settings'}, outputs in {OUT}")'''


def show_image_cell(path_expr: str) -> str:
    return f"from IPython.display import Image, display\n\ndisplay(Image(filename={path_expr}))"


# ------------------------------------------------------------------------------ 01: quantize
NB1 = [
    new_markdown_cell("""\
# 1. Quantize your own Keras model with a per-layer policy, then export it

This tutorial takes a Keras model you built yourself, the way Colab builds it today (Keras 3, the Keras of
TensorFlow >= 2.16), and gives each of its layers its own bit-width:

1. build and train a small float CNN in Keras 3 (a stand-in for *your* model);
2. list its **quantizable groups** (a Conv/Dense layer with the BatchNormalization and ReLU folded into it);
3. write a **per-layer policy** (8 bits for the first and last layer, 4 bits in between) and look at its cost;
4. build the **quantization-aware training (QAT)** model with `tfmpq.quantize_model` and fine-tune it;
5. **export** a full-integer `.tflite` and check its accuracy on the real LiteRT and TFLite Micro interpreters.

The data is the Fashion-MNIST subset shipped inside tfmpq (no download)."""),
    new_code_cell(INSTALL),
    new_code_cell(SETUP_KERAS3),
    new_markdown_cell("""\
## Data and a float model, in Keras 3

`tfmpq.data.load` returns float32 images in [0, 1] and integer labels (any `(x, y)` arrays do). `"default"`
is the embedded Fashion-MNIST subset (10,000 training and 2,000 test images); `"fashion_mnist"`, `"mnist"`,
`"cifar10"`, a `.npz` file or an image folder work the same way. The model is plain Keras 3: nothing in it
knows about tfmpq."""),
    new_code_cell('''\\
from tfmpq import data  # importing tfmpq before or after your model is built both work

ds = data.load("default", num_train=1000 if SMALL else None, num_test=500 if SMALL else None, seed=0)
(x_train, y_train), (x_val, y_val) = data.split_validation(ds, 0.1, seed=0)
print(ds, "->", len(y_train), "train /", len(y_val), "validation")

L = keras.layers
inputs = keras.Input(ds.input_shape, name="image")
x = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv_a")(inputs)
x = L.BatchNormalization(name="conv_a_bn")(x)
x = L.ReLU(name="conv_a_relu")(x)
x = L.MaxPooling2D(2, name="pool_a")(x)
x = L.Conv2D(32, 3, padding="same", use_bias=False, name="conv_b")(x)
x = L.BatchNormalization(name="conv_b_bn")(x)
x = L.ReLU(name="conv_b_relu")(x)
x = L.MaxPooling2D(2, name="pool_b")(x)
x = L.Flatten(name="flatten")(x)
x = L.Dense(64, activation="relu", name="fc")(x)
outputs = L.Dense(ds.num_classes, activation="softmax", name="head")(x)
model = keras.Model(inputs, outputs, name="my_cnn")

model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=1 if SMALL else 8, batch_size=64, verbose=2)
float_accuracy = model.evaluate(ds.x_test, ds.y_test, verbose=0)[1]
print(f"float test accuracy (Keras {keras.__version__}): {100 * float_accuracy:.2f}%")'''),
    new_markdown_cell("""\
## Quantizable groups

tfmpq quantizes *groups*: each Conv2D / DepthwiseConv2D / Dense layer together with the
BatchNormalization it folds and the ReLU that follows. One policy gene = one group. Layers tfmpq cannot
quantize are listed by `tfmpq.float_layers` (with the reason) and stay in float.

tfmpq's quantization-aware training runs on tf_keras (Keras 2, which tensorflow-model-optimization needs).
Every tfmpq function takes your Keras 3 model as it is and converts it to the equivalent tf_keras model:
the same layers and names, the same weights, the same outputs (`tfmpq.as_tf_keras(model)` returns it). A
layer it cannot convert is named in the error, with the list of layers it can."""),
    new_code_cell('''\\
import tfmpq

groups = tfmpq.quantizable_groups(model)
print(tfmpq.graph.groups_table(groups))
print("stays float:", tfmpq.float_layers(model) or "nothing")

converted = tfmpq.as_tf_keras(model)  # what tfmpq works on: same layers, names and weights
gap = np.abs(model.predict(ds.x_test[:256], verbose=0) - converted.predict(ds.x_test[:256], verbose=0)).max()
print(f"{type(converted).__module__}: largest output difference to the Keras 3 model {gap:.1e}")'''),
    new_markdown_cell("""\
## A per-layer policy and what it costs

`QuantPolicy.from_bits` takes one bit-width for all groups, a list in group order, or a `{group: bits}`
dict. Bits 2..8 quantize; 16 or 32 keep a group in float. `tfmpq.metrics.summary` gives the cost without
building anything:

- `weight_bytes`: weights at their bit-widths + 32-bit biases + one scale per output channel;
- `compression_ratio`: float size / quantized size;
- `avg_weight_bits`: parameter-weighted average weight bit-width;
- `bops`: bit operations (MACs x weight bits x activation bits); `avg_op_bits`: their MAC-weighted average."""),
    new_code_cell('''\\
policy = tfmpq.QuantPolicy.from_bits(
    model, weight_bits={"conv_a": 8, "conv_b": 4, "fc": 4, "head": 8}, activation_bits=8)
print(policy)

for name, p in [("uniform 8-bit", tfmpq.QuantPolicy.uniform(model, 8)), ("mixed 8/4/4/8", policy)]:
    m = tfmpq.metrics.summary(model, p)
    print(f"{name:>14}: {m['weight_bytes'] / 1024:6.2f} KiB (float {m['float_weight_bytes'] / 1024:.2f} KiB, "
          f"{m['compression_ratio']:.2f}x), avg weight bits {m['avg_weight_bits']:.2f}, "
          f"avg op bits {m['avg_op_bits']:.2f}, {m['bops'] / 1e6:.1f} MBOPs")'''),
    new_markdown_cell("""\
## Quantization-aware training

`tfmpq.quantize_model` returns a Keras model: each group becomes one layer that folds its
BatchNormalization, fake-quantizes its kernel at the group's bit-width and its output at the group's
activation bits. It is a **tf_keras** model, so compile it with a tf_keras optimizer (or a name such as
`"adam"`), then fit it like any Keras model; a few epochs at a small learning rate recover most of the
accuracy lost to 4-bit weights."""),
    new_code_cell('''\\
import tf_keras  # Keras 2: the QAT model's Keras

qat = tfmpq.quantize_model(model, policy)
qat.compile(tf_keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
qat.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=1 if SMALL else 5, batch_size=64, verbose=2)
qat_accuracy = qat.evaluate(ds.x_test, ds.y_test, verbose=0)[1]
print(f"QAT test accuracy: {100 * qat_accuracy:.2f}% (float {100 * float_accuracy:.2f}%)")
print(tfmpq.policy_of(qat))

# .h5: reload with `with tfmpq.quantize_scope(): tf_keras.models.load_model(path)`
qat.save(os.path.join(OUT, "my_cnn_qat.h5"))'''),
    new_markdown_cell("""\
## Export to TFLite and check it on the real interpreters

`export_tflite` writes a full-integer `.tflite` (int8 weights and activations, int32 biases). The 4-bit
groups are stored in **int8 containers** whose values stay on the trained 4-bit grid (at most 16
distinct values per output channel), so every TFLite runtime runs them unchanged; the report shows both
the int8 size and the size at the trained bit-widths. `evaluate_tflite` measures the accuracy on LiteRT
and on the TFLite Micro interpreter (the one that runs on microcontrollers)."""),
    new_code_cell('''\\
from tfmpq.export import count_levels, evaluate_tflite, export_tflite

path = os.path.join(OUT, "my_cnn.tflite")
report = export_tflite(qat, path, representative_data=x_train[:256])
print(report)

for tensor, info in count_levels(path).items():
    print(f"{tensor[:60]:<60} {info['type']:>5} max {info['max_levels_per_channel']} values per channel")

for runtime in ("litert", "tflm"):
    acc = evaluate_tflite(path, ds.x_test, ds.y_test, runtime=runtime)
    print(f"{runtime:>6} test accuracy: {100 * acc:.2f}%  (Keras QAT model: {100 * qat_accuracy:.2f}%)")'''),
    new_markdown_cell("""\
**Next:** let a search pick the bits for you ([02: NSGA-II and the Pareto front](02_nsga2_pareto.ipynb),
[03: BBPSO under a bit budget](03_bbpso_budget.ipynb)), then deploy ([04](04_deploy_to_mcu.ipynb)).
The same steps from a shell, on your model saved with `model.save("my_cnn.keras")`:
`tfmpq info my_cnn.keras`, `tfmpq quantize my_cnn.keras --bits 8,4,4,8 -o OUT`, `tfmpq export OUT -o OUT/export`."""),
]

# ------------------------------------------------------------------------------ 02: NSGA-II
NB2 = [
    new_markdown_cell("""\
# 2. NSGA-II search: the accuracy / size Pareto front

Which layers can take 2 or 3 bits, and which need 8? `tfmpq.search.nsga2` searches the per-group weight
bit-widths with the NSGA-II genetic algorithm: every candidate policy is quantized and scored (a short
QAT fine-tune, or post-training calibration), and the search keeps the **Pareto front**: the policies
for which no other is both smaller and more accurate.

The model is the float CNN shipped with tfmpq (`zoo:small_cnn_fmnist`, trained on Fashion-MNIST)."""),
    new_code_cell(INSTALL),
    new_code_cell(SETUP),
    new_code_cell('''\
import tfmpq.search  # the search API: tfmpq.search.nsga2, tfmpq.search.run, ...

model = zoo.resolve_model("zoo:small_cnn_fmnist")
ds = data.load("default", num_train=600 if SMALL else 4000, seed=0)
(x_train, y_train), (x_val, y_val) = data.split_validation(ds, 0.1 if not SMALL else 0.3, seed=0)
print(tfmpq.graph.groups_table(tfmpq.quantizable_groups(model)))
print(len(y_train), "training /", len(y_val), "validation images")'''),
    new_markdown_cell("""\
## Run the search

- `evaluation="qat"` scores each candidate by `epochs` of quantization-aware training (the best epoch's
  validation accuracy); `"ptq"` only calibrates the activation ranges (much faster, less accurate).
- `population` / `offspring` / `generations` size the genetic algorithm; the initial population holds
  every uniform policy (all 2-bit, ..., all 8-bit), so the front is always compared with them.
- `run_dir` keeps an append-only journal of every evaluation: re-running the cell with `resume=True`
  continues a killed search where it stopped.
- On a machine with more cores, GPUs or a Ray cluster, `executor="process", workers=4` or
  `executor="ray", ray_address="auto", gpus_per_worker=1` spreads the candidates over workers; the same
  seed gives the same search (README, "Searching on more cores, GPUs or a Ray cluster")."""),
    new_code_cell('''\
run_dir = os.path.join(OUT, "nsga2")
result = tfmpq.search.nsga2(
    model, (x_train, y_train), (x_val, y_val),
    evaluation="ptq" if SMALL else "qat",
    epochs=1,
    bits=(2, 4, 8) if SMALL else (2, 3, 4, 5, 6, 7, 8),
    population=4 if SMALL else 12,
    offspring=2 if SMALL else 12,
    generations=1 if SMALL else 6,
    run_dir=run_dir, overwrite=True, seed=0, verbose=1,
)'''),
    new_markdown_cell("""\
## The Pareto front

Grey: every evaluated policy. Red: the front. Blue squares: the uniform policies. A good mixed-precision
policy sits left of (smaller than) the uniform policy of the same accuracy."""),
    new_code_cell('''\
tfmpq.report.plot_pareto(result, os.path.join(run_dir, "pareto.png"))
''' + show_image_cell('os.path.join(run_dir, "pareto.png")')),
    new_code_cell('''\
from tfmpq import report

run = report.load_run(run_dir)  # the same tables `tfmpq report RUN_DIR` prints
print(report.front_table(run))
print()
print(result.summary())'''),
    new_markdown_cell("""\
## Pick a policy and fine-tune it

The search scores candidates with a short evaluation; fine-tune the member you want to deploy for a few
more QAT epochs. Here: the smallest member within 1 percentage point of the most accurate one."""),
    new_code_cell('''\
best_accuracy = max(c.accuracy for c in result.front)
chosen = min((c for c in result.front if c.accuracy >= best_accuracy - 0.01), key=lambda c: c.weight_bytes)
print("chosen:", chosen.policy, f"{100 * chosen.accuracy:.2f}%", f"{chosen.weight_bytes / 1024:.2f} KiB")

tuned = result.finetune(1 if SMALL else 5, members=[chosen])[0]
tuned_model = result.finetuned[0][1]
print(f"after fine-tuning: validation accuracy {100 * tuned.accuracy:.2f}%")
tuned_model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
print(f"test accuracy: {100 * tuned_model.evaluate(ds.x_test, ds.y_test, verbose=0)[1]:.2f}%")'''),
    new_markdown_cell("""\
**From a shell:** `tfmpq search zoo:small_cnn_fmnist --strategy nsga2 --population 12 --generations 6 -o runs/nsga2`,
then `tfmpq report runs/nsga2` and `tfmpq export runs/nsga2 -o runs/nsga2/export`.
Deploying the chosen model is [notebook 4](04_deploy_to_mcu.ipynb)."""),
]

# ------------------------------------------------------------------------------ 03: BBPSO
NB3 = [
    new_markdown_cell("""\
# 3. BBPSO: the most accurate policy under a bit budget

Sometimes the target is fixed: *"at most 4 bits per operation on average"* (what an accelerator or a
latency budget allows). BBPSO-Quantizer (a bare-bones particle swarm) searches the weight **and**
activation bit-widths of every group for the most accurate policy whose **average operation bit-width**
(MAC-weighted, `avg_op_bits`) stays within the budget. Infeasible policies are handled with Deb's rule
(feasible beats infeasible; among infeasible ones, the smaller violation wins)."""),
    new_code_cell(INSTALL),
    new_code_cell(SETUP),
    new_code_cell('''\
model = zoo.resolve_model("zoo:small_cnn_fmnist")
ds = data.load("default", num_train=600 if SMALL else 4000, seed=0)
(x_train, y_train), (x_val, y_val) = data.split_validation(ds, 0.1 if not SMALL else 0.3, seed=0)

uniform4 = tfmpq.QuantPolicy.uniform(model, weight_bits=4, activation_bits=4)
print("uniform w4a4 avg_op_bits:", tfmpq.metrics.summary(model, uniform4)["avg_op_bits"])'''),
    new_markdown_cell("""\
## Run BBPSO with `avg_op_bits <= 4`

- `budget` is the constrained metric (`"avg_op_bits"`, `"avg_weight_bits"`, `"weight_bytes"` or `"bops"`),
  `target` its limit;
- `swarm` particles move for `iterations` iterations; the initial swarm is placed by layer importance
  (LIGPI: layers with more sensitive weights start with more bits);
- each particle is scored by `epochs` of QAT (`evaluation="ptq"` calibrates only)."""),
    new_code_cell('''\
from tfmpq.search import bbpso

run_dir = os.path.join(OUT, "bbpso")
result = bbpso(
    model, (x_train, y_train), (x_val, y_val),
    budget="avg_op_bits", target=4.0,
    evaluation="ptq" if SMALL else "qat",
    epochs=1 if SMALL else 2,
    swarm=4 if SMALL else 12,
    iterations=1 if SMALL else 10,
    run_dir=run_dir, overwrite=True, seed=0, verbose=1,
)'''),
    new_markdown_cell("""\
## The result

`result.best` is the most accurate feasible policy seen; `result.report` has the paper's metrics:
accuracy change vs. the float model, compression ratio (32 / average weight bits) and average weight /
operation bit-widths."""),
    new_code_cell('''\
best = result.best
print(best.policy)
for key, value in result.report.items():
    print(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")

summary = tfmpq.metrics.summary(model, best.policy)
print(f"{'group':<14}{'w bits':>7}{'a bits':>7}{'MACs':>12}")
for g in summary["groups"]:
    print(f"{g['name']:<14}{g['weight_bits']:>7}{g['activation_bits']:>7}{g['macs']:>12,}")'''),
    new_code_cell('''\
tfmpq.report.plot_history(result, os.path.join(run_dir, "convergence.png"))  # best feasible accuracy per iteration
''' + show_image_cell('os.path.join(run_dir, "convergence.png")')),
    new_markdown_cell("""\
## Compare with uniform 4-bit

The uniform w4a4 policy meets the same budget exactly; scoring it the same way shows what mixing
bit-widths buys."""),
    new_code_cell('''\
evaluator = result.evaluator  # the same data, seed and evaluation as the search
uniform = evaluator.evaluate(uniform4)
print(f"uniform w4a4: {100 * uniform.accuracy:.2f}% at avg_op_bits {uniform.metrics['avg_op_bits']:.2f}")
print(f"BBPSO best  : {100 * best.accuracy:.2f}% at avg_op_bits {best.metrics['avg_op_bits']:.2f}")'''),
    new_markdown_cell("""\
## Sensitivity-guided: the Hessian, an integer linear program, clustered TPE

A search can start from what the float model already tells: how curved its loss is around each group's
weights. `hessian_trace` estimates the trace of the loss Hessian w.r.t. each group's (BN-folded) kernel
with Hutchinson's method (Rademacher probes, Hessian-vector products by double backprop). Then

- **`ilp`** (HAWQ-V3) minimises `sum_g Tr(H_g) ||Q_b(W_g) - W_g||^2 / n_g` under the budget with an exact
  integer linear program (seconds), and scores its best few allocations;
- **`ctpe`** (Azizi et al. 2023) clusters the per-weight traces to prune each group's bit-widths, then runs
  a TPE whose good / bad densities are the top and bottom k-means clusters of the scores.

Both allocate weight bits (activations stay 8-bit), here within uniform 4-bit's weight bytes."""),
    new_code_cell('''\
from tfmpq.hessian import hessian_trace
from tfmpq.search import ctpe, ilp

traces = hessian_trace(model, (x_train, y_train), num_probes=4 if SMALL else 64, num_samples=256 if SMALL else 512,
                       seed=0)
for g in traces.groups:
    print(f"{g:<12} Tr(H) {traces.trace[g]:9.3g} +- {traces.std_error[g]:<8.2g} per weight "
          f"{traces.trace[g] / traces.params[g]:.3g}")

u4_bytes = tfmpq.metrics.summary(model, tfmpq.QuantPolicy.uniform(model, 4))["weight_bytes"]
options = dict(budget="weight_bytes", target=u4_bytes, evaluation="ptq" if SMALL else "qat", epochs=1,
               sensitivity=traces, overwrite=True, seed=0, verbose=0)
by_ilp = ilp(model, (x_train, y_train), (x_val, y_val), solutions=2 if SMALL else 4,
             run_dir=os.path.join(OUT, "ilp"), **options)
by_tpe = ctpe(model, (x_train, y_train), (x_val, y_val), trials=4 if SMALL else 24,
              run_dir=os.path.join(OUT, "ctpe"), **options)
uniform_w4 = by_ilp.evaluator.evaluate(tfmpq.QuantPolicy.uniform(model, 4))
for name, c in [("uniform 4-bit", uniform_w4), ("ILP", by_ilp.best), ("clustered TPE", by_tpe.best)]:
    print(f"{name:<14} {c.policy.weight_bits}  {100 * c.accuracy:.2f}%  {c.weight_bytes:.0f} B")
print("clustered TPE's pruned bits:", by_tpe.pruned)'''),
    new_markdown_cell("""\
The ILP's allocations can also seed the evolutionary searches: `nsga2(..., seed_ilp=4)` puts four of them
(at budgets spread over the cost range) into the initial population, `bbpso(..., seed_ilp=4)` into the
swarm. Validation scores chose these policies; report a held-out test accuracy before trusting a gap
(`python -m bench.strategies` does, with McNemar's test against uniform).

**From a shell:** `tfmpq search zoo:small_cnn_fmnist --strategy bbpso --budget avg_op_bits --target 4 -o runs/bbpso4`,
then `tfmpq export runs/bbpso4 -o runs/bbpso4/export` (a budgeted run exports its best policy);
`--strategy ilp --budget weight_bytes --target u4` and `--strategy ctpe ...` likewise."""),
    new_markdown_cell("""\
## Bits per output channel

A layer's output channels need not share one width. With `granularity="channel"` each free group's output
channels are ordered by how much quantization hurts them (`channel_ranking="weight"`: each channel's error
at the lowest width; `"hessian"`: that error times its Hessian trace) and cut into `channel_clusters`
clusters, one gene each; `ilp`, `nsga2`, `bbpso`, `ctpe` and one-shot scoring all take these spaces. The
costs count every channel at its width, and the export splits a mixed layer into one sub-layer per width,
each stored at its width (INT4 at <= 4 bits with `packed="int4"`).

The same budget as above, allocated per cluster of channels:"""),
    new_code_cell('''\
by_channel = ilp(model, (x_train, y_train), (x_val, y_val), granularity="channel", channel_clusters=4,
                 solutions=2 if SMALL else 4, run_dir=os.path.join(OUT, "ilp_channel"), **options)
best_c = by_channel.best
for name, c in [("layer-wise ILP", by_ilp.best), ("channel-wise ILP", best_c)]:
    print(f"{name:<17} {100 * c.accuracy:.2f}%  {c.weight_bytes:.0f} B")
for g in tfmpq.metrics.summary(model, best_c.policy)["groups"]:
    print(f"{g['name']:<12} [width, channels]: {g.get('channels', [[g['weight_bits'], 'all']])}")'''),
    new_markdown_cell("""\
Fine-tune it, export it with native INT4 storage and check the file: its weight bytes are the policy's
`flash_bytes`, and LiteRT and TFLite Micro give the same int8 outputs. (Validation chose this policy:
compare it with uniform ones on held-out data, after the same fine-tuning, before trusting a gap —
`python -m bench.budget_curve --granularity channel` does.)"""),
    new_code_cell('''\
from tfmpq.export import export_tflite, run_tflite

qat = tfmpq.quantize_model(model, best_c.policy)
qat.compile(tf_keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
qat.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
channel_report = export_tflite(qat, os.path.join(OUT, "cnn_channel.tflite"), x_train[:256], packed="int4")
flash = tfmpq.metrics.summary(model, best_c.policy, packing="int4")["flash_bytes"]
print(f"file weight bytes {channel_report.flash_bytes}, policy flash_bytes {flash:.0f}")
print("LiteRT == TFLite Micro:", np.array_equal(run_tflite(channel_report.path, x_val[:100], "litert"),
                                               run_tflite(channel_report.path, x_val[:100], "tflm")))'''),
    new_markdown_cell("""\
**From a shell:** `tfmpq search zoo:small_cnn_fmnist --strategy ilp --budget weight_bytes --target u4
--granularity channel --channel-clusters 4 -o runs/ilp_channel`."""),
]

# ------------------------------------------------------------------------------ 04: deploy
NB4 = [
    new_markdown_cell("""\
# 4. Deploy to a microcontroller: C array, TFLite Micro check, sizes

A mixed-precision model is only useful if it runs where it is meant to. This notebook

1. trains a 8/4/4/8-bit policy of the demo CNN;
2. exports it to a full-integer `.tflite` **and a C array** (`.h` / `.cc`) to compile into firmware;
3. checks it on the **TFLite Micro** interpreter (the runtime of the firmware) against LiteRT;
4. compares sizes: float, uniform int8, mixed precision in int8 containers, and **LUT-packed** sub-8-bit
   weights (TFLite Micro's compression, which stores a 4-bit weight in 4 bits)."""),
    new_code_cell(INSTALL),
    new_code_cell(SETUP),
    new_code_cell('''\
from tfmpq.export import evaluate_tflite, export_tflite, run_tflite, write_c_array

model = zoo.resolve_model("zoo:small_cnn_fmnist")
ds = data.load("default", num_train=500 if SMALL else None, num_test=300 if SMALL else None, seed=0)
(x_train, y_train), (x_val, y_val) = data.split_validation(ds, 0.1, seed=0)
epochs = 1 if SMALL else 3


def train(policy):
    qat = tfmpq.quantize_model(model, policy)
    qat.compile(tf_keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
    qat.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=64, verbose=0)
    return qat


mixed = tfmpq.QuantPolicy.from_bits(model, weight_bits=[8, 4, 4, 8], activation_bits=8)
uniform8 = tfmpq.QuantPolicy.uniform(model, 8)
qat_mixed, qat_8bit = train(mixed), train(uniform8)
print("trained", mixed, "and", uniform8)'''),
    new_markdown_cell("""\
## Export, with a C array

`c_array="NAME"` also writes `NAME.h` / `NAME.cc`: the model bytes as a 16-byte aligned
`const unsigned char NAME[]` and `NAME_len`, ready for `tflite::GetModel(NAME)` in a TFLite Micro
project. The report includes the TFLite Micro **arena** size the model needs."""),
    new_code_cell('''\
rep = x_train[:256]
mixed_report = export_tflite(qat_mixed, os.path.join(OUT, "cnn_mixed.tflite"), rep, c_array="cnn_mixed_model")
int8_report = export_tflite(qat_8bit, os.path.join(OUT, "cnn_int8.tflite"), rep)
print(mixed_report)
print()
header, source = mixed_report.c_array
print(open(header).read())
print(open(source).read()[:400], "...")'''),
    new_markdown_cell("""\
## Check it on TFLite Micro

The same int8 inputs through LiteRT and through the TFLite Micro interpreter: the raw int8 outputs
should be identical (tfmpq deploys Dense layers as 1x1 convolutions because the two runtimes' fully
connected kernels round differently), and the accuracy is what the firmware will get."""),
    new_code_cell('''\
x_check = ds.x_test[:100]
same = np.array_equal(run_tflite(mixed_report.path, x_check, runtime="litert"),
                      run_tflite(mixed_report.path, x_check, runtime="tflm"))
print("LiteRT and TFLite Micro outputs bit-identical:", same)
for name, r in [("mixed 8/4/4/8", mixed_report), ("uniform int8", int8_report)]:
    acc = evaluate_tflite(r.path, ds.x_test, ds.y_test, runtime="tflm")
    print(f"{name:>14}: TFLite Micro test accuracy {100 * acc:.2f}%, arena {r.tflm_arena_bytes} B")'''),
    new_markdown_cell("""\
## Sizes: int8 containers vs. packed

TFLite has no 4-bit tensor type for most kernels, so a plain export stores 4-bit weights in int8
containers: the **file** is as large as uniform int8, only the values are restricted to 16 levels.
`packed=True` applies TFLite Micro's LUT compression: each sub-8-bit tensor becomes b-bit indices plus a
small value table per channel, decoded on the device. The packed file runs on TFLite Micro only."""),
    new_code_cell('''\
packed_report = export_tflite(qat_mixed, os.path.join(OUT, "cnn_mixed_packed.tflite"), rep, packed=True,
                              c_array="cnn_mixed_packed_model")
packed_acc = evaluate_tflite(packed_report.path, ds.x_test, ds.y_test, runtime="tflm")
print(f"packed model on TFLite Micro: {100 * packed_acc:.2f}% test accuracy, arena {packed_report.tflm_arena_bytes} B")

float_kib = tfmpq.metrics.summary(model, uniform8)["float_weight_bytes"] / 1024
print(f"{'':<28}{'file KiB':>9}{'weights KiB':>12}")
print(f"{'float32 weights':<28}{'':>9}{float_kib:>12.2f}")
print(f"{'uniform int8':<28}{int8_report.file_bytes / 1024:>9.2f}{int8_report.int8_weight_bytes / 1024:>12.2f}")
print(f"{'8/4/4/8 in int8 containers':<28}{mixed_report.file_bytes / 1024:>9.2f}"
      f"{mixed_report.int8_weight_bytes / 1024:>12.2f}")
print(f"{'8/4/4/8 at trained bits':<28}{'':>9}{mixed_report.packed_weight_bytes / 1024:>12.2f}")
print(f"{'8/4/4/8 LUT-packed':<28}{packed_report.file_bytes / 1024:>9.2f}"
      f"{packed_report.lut_weight_bytes / 1024:>12.2f}")'''),
    new_markdown_cell("""\
**From a shell:** `tfmpq quantize zoo:small_cnn_fmnist --bits 8,4,4,8 --epochs 3 -o out`, then
`tfmpq export out --c-array --packed -o out/mcu` (prints the TFLite Micro accuracy).

In firmware: `#include "cnn_mixed_model.h"`, `const tflite::Model* m = tflite::GetModel(cnn_mixed_model);`,
an arena of at least the reported size, and (for the packed file) TFLite Micro built with compression
support (`USE_TFLM_COMPRESSION=1`)."""),
]

# ------------------------------------------------------------------------------ 05: transfer learning
NB5 = [
    new_markdown_cell("""\
# 5. Transfer learning: a Keras Applications backbone inside your model, searched and deployed

The usual way to build a model for a small device is a pretrained **backbone nested inside your model**:

```python
backbone = keras.applications.MobileNetV2(include_top=False, weights="imagenet", alpha=0.35)
model = keras.Sequential([keras.Input(shape), backbone, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(n)])
```

To the outer model the backbone is one layer. tfmpq flattens it: every convolution inside becomes its own
**group**, named with its nesting (`mobilenetv2_0.35_32/block_1_expand`), so policies, searches and reports
reach into the backbone. This notebook

1. builds the transfer-learning model in Keras 3 and trains it (here `weights=None` and Fashion-MNIST
   padded to 32x32x3, so nothing is downloaded; on Colab use `weights="imagenet"` and your own images);
2. lists the groups inside the backbone and checks that nothing stays in float;
3. searches the per-group bits with NSGA-II (first and last group pinned at 8 bits);
4. fine-tunes the chosen policy, exports it and runs it on LiteRT and TFLite Micro."""),
    new_code_cell(INSTALL),
    new_code_cell(SETUP_KERAS3),
    new_markdown_cell("""\
## Data and the transfer-learning model, in Keras 3

The backbone is a Keras Applications MobileNetV2 without its classifier (`include_top=False`), nested in a
`Sequential` with a pooling layer and a new head. Its BatchNormalization layers get momentum 0.9 here
because the backbone trains from scratch for a few epochs only (a pretrained one would not need it)."""),
    new_code_cell('''\
from tfmpq import data

ds = data.load("default", num_train=600 if SMALL else None, num_test=300 if SMALL else None, seed=0)
to_rgb32 = lambda x: np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)  # 28x28x1 -> 32x32x3
x_all, x_test, y_test = to_rgb32(ds.x_train), to_rgb32(ds.x_test), ds.y_test
split = len(x_all) * 9 // 10
(x_train, y_train), (x_val, y_val) = (x_all[:split], ds.y_train[:split]), (x_all[split:], ds.y_train[split:])

backbone = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
for layer in backbone.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.9
model = keras.Sequential([keras.Input((32, 32, 3)), backbone, keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dropout(0.2), keras.layers.Dense(ds.num_classes)], name="transfer")
model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=1 if SMALL else 8, batch_size=64, verbose=2)
float_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
print(f"float test accuracy: {100 * float_accuracy:.2f}% ({len(model.layers)} layers, one of them the backbone)")'''),
    new_markdown_cell("""\
## The backbone's layers are groups

`tfmpq.quantizable_groups` sees the flat graph (`tfmpq.as_tf_keras(model)` returns it: the same layers,
weights and outputs): 52 groups inside the backbone and the head. Anything that stayed in float would be
listed by `tfmpq.float_layers`, named in a warning by `quantize_model` and every search (`strict=True` makes it
an error), and counted at 32 bits by `tfmpq.metrics.summary` (`float_weight_share`)."""),
    new_code_cell('''\
import tfmpq

groups = tfmpq.quantizable_groups(model)
print(tfmpq.graph.groups_table(groups[:6]), "\\n...\\n" + tfmpq.graph.groups_table(groups[-2:]).split("\\n", 1)[1])
print(len(groups), "groups; stays float:", tfmpq.float_layers(model) or "nothing")

flat = tfmpq.as_tf_keras(model)
gap = np.abs(model.predict(x_test[:64], verbose=0) - flat.predict(x_test[:64], verbose=0)).max()
print(f"flat tf_keras model: {len(flat.layers)} layers, largest output difference {gap:.1e}")
for bits in (8, 4):
    s = tfmpq.metrics.summary(model, tfmpq.QuantPolicy.uniform(model, bits))
    print(f"uniform {bits}-bit: {s['weight_bytes'] / 1024:.1f} KiB, avg weight bits {s['avg_weight_bits']:.2f}, "
          f"float weight share {s['float_weight_share']:.1%}")'''),
    new_markdown_cell("""\
## Search the bits of every group

NSGA-II over the weight bits of the 53 groups, the stem convolution and the classifier pinned at 8 bits
(`pin_first_last=True`), scored by post-training calibration in the small CI run and by one QAT epoch with
realistic settings. The search, its journal and its resume work as in [notebook 2](02_nsga2_pareto.ipynb)."""),
    new_code_cell('''\
import tfmpq.search

run_dir = os.path.join(OUT, "transfer_nsga2")
result = tfmpq.search.nsga2(
    model, (x_train, y_train), (x_val, y_val),
    evaluation="ptq" if SMALL else "qat", epochs=1,
    bits=(4, 8) if SMALL else (3, 4, 5, 6, 8), pin_first_last=True,
    population=4 if SMALL else 16, offspring=2 if SMALL else 16, generations=1 if SMALL else 8,
    run_dir=run_dir, overwrite=True, seed=0, verbose=1,
)
for c in sorted(result.front, key=lambda c: c.weight_bytes):
    print(f"{100 * c.accuracy:6.2f}%  {c.weight_bytes / 1024:7.1f} KiB  "
          f"mean bits {np.mean(c.policy.weight_bits):.2f}")'''),
    new_markdown_cell("""\
## Fine-tune the chosen policy, export it, run it

The smallest front member within 1 percentage point of the most accurate one is fine-tuned with QAT, then
exported to a full-integer `.tflite` and run on LiteRT and on the TFLite Micro interpreter.
`packed="auto"` stores each group at its bit-width where the runtimes have kernels for it."""),
    new_code_cell('''\
from tfmpq.export import evaluate_tflite, export_tflite

best_accuracy = max(c.accuracy for c in result.front)
chosen = min((c for c in result.front if c.accuracy >= best_accuracy - 0.01), key=lambda c: c.weight_bytes)
result.finetune(1 if SMALL else 4, members=[chosen])
qat = result.finetuned[0][1]
by_bits = {}
for name, bits in zip(chosen.policy.group_names, chosen.policy.weight_bits):
    by_bits.setdefault(bits, []).append(name)
for bits, names in sorted(by_bits.items()):
    print(f"{bits} bits: {len(names)} groups, e.g. {names[:2]}")

path = os.path.join(OUT, "transfer.tflite")
report = export_tflite(qat, path, representative_data=x_train[:256], packed="auto")
print(f"{report.file_bytes / 1024:.1f} KiB file, {report.flash_bytes / 1024:.1f} KiB of weights as stored, "
      f"TFLite Micro arena {report.arena_bytes / 1024:.1f} KiB; runs on {report.runtimes}")
for runtime in report.runtimes:
    acc = evaluate_tflite(path, x_test[:200] if runtime == "tflm" else x_test, y_test[:200] if runtime == "tflm"
                          else y_test, runtime=runtime)
    print(f"{runtime:>6} test accuracy: {100 * acc:.2f}%  (float Keras model: {100 * float_accuracy:.2f}%)")'''),
    new_markdown_cell("""\
**Your own backbone** works the same: any `Sequential` or functional model nested in another, at any depth,
in Keras 3 or tf_keras, is flattened; a `SeparableConv2D` becomes two groups (depthwise and pointwise) and a
`Conv2DTranspose` one. Models with several inputs or outputs take lists or dicts of arrays wherever data is
passed (`representative_data`, the search's `train` / `val`, `run_tflite`)."""),
]

NOTEBOOKS = {
    "01_quantize_your_model.ipynb": NB1,
    "02_nsga2_pareto.ipynb": NB2,
    "03_bbpso_budget.ipynb": NB3,
    "04_deploy_to_mcu.ipynb": NB4,
    "05_transfer_learning.ipynb": NB5,
}

def build(name: str, cells: list) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = []
    for i, cell in enumerate(cells):
        cell = nbformat.from_dict(dict(cell))
        cell["id"] = f"{name[:2]}-{i:02d}"  # stable ids: regenerating gives the same file
        nb.cells.append(cell)
    nb.metadata = {
        "colab": {"provenance": [], "toc_visible": True},
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nbformat.validate(nb)
    return nb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail if a notebook differs from what this script writes")
    args = p.parse_args(argv)
    stale = []
    for name, cells in NOTEBOOKS.items():
        path = os.path.join(HERE, name)
        text = nbformat.writes(build(name, cells)) + "\n"
        if args.check:
            if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
                stale.append(name)
            continue
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python notebooks/make_notebooks.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
