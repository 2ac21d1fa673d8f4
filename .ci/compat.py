"""Compatibility check: notebook 1 on fresh venvs with the oldest and newest supported TensorFlow.

For each TensorFlow version: a new venv with only that TensorFlow (which brings Keras 3 as its default
Keras) and the Jupyter packages that run a notebook; then notebook 1 runs there with small settings
(``TFMPQ_NOTEBOOK_SMALL=1``), next to a tfmpq wheel, so its own install cell installs tfmpq from the
wheel with the tf-keras matching that TensorFlow, as on Colab. The repository is not on the path.

Also recorded per version: what ``pip install <wheel>`` alone (no tf-keras pin) would install, i.e.
whether setup.py's requirements let pip pick a tf-keras matching the installed TensorFlow.

Usage: python .ci/compat.py --wheel dist/tfmpq-0.1.0-py3-none-any.whl --tensorflow 2.16.2 2.21.0
       [--out build/compat] [--python python3.11] [--fresh]
       python .ci/compat.py --table-only --wheel W --tensorflow V   (table.md again from results.json)
Writes OUT/results.json and OUT/table.md (the README's table); exits 1 if a notebook failed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "01_quantize_your_model.ipynb")
RUNNER_PACKAGES = ["nbclient", "nbformat", "ipykernel"]
# Lines notebook 1 prints that the table reports.
PATTERNS = {
    "install": r"installing (.*) \(TensorFlow",
    "float_accuracy": r"float test accuracy \(Keras [^)]*\): ([\d.]+)%",
    "conversion_gap": r"largest output difference to the Keras 3 model ([\d.e+-]+)",
    "qat_accuracy": r"QAT test accuracy: ([\d.]+)%",
    "litert_accuracy": r"litert test accuracy: ([\d.]+)%",
    "tflm_accuracy": r"tflm test accuracy: ([\d.]+)%",
}


def _clean_env() -> dict:
    env = dict(os.environ)
    for name in ("PYTHONPATH", "TF_USE_LEGACY_KERAS", "VIRTUAL_ENV"):
        env.pop(name, None)
    env["TFMPQ_NOTEBOOK_SMALL"] = "1"
    return env


def _run(cmd, log, cwd=None, timeout=3600) -> subprocess.CompletedProcess:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    done = subprocess.run(cmd, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout)
    log.write(done.stdout + done.stderr + f"[exit {done.returncode}]\n")
    log.flush()
    return done


def _venv(python: str, tensorflow: str, folder: str, fresh: bool, log) -> str:
    py = os.path.join(folder, "bin", "python")
    base = os.path.join(folder, "base-packages.txt")
    if fresh and os.path.isdir(folder):
        shutil.rmtree(folder)
    if not os.path.exists(base):
        shutil.rmtree(folder, ignore_errors=True)
        _run([python, "-m", "venv", folder], log).check_returncode()
        _run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"], log).check_returncode()
        _run([py, "-m", "pip", "install", "-q", f"tensorflow=={tensorflow}"] + RUNNER_PACKAGES,
             log).check_returncode()
        with open(base, "w", encoding="utf-8") as f:
            f.write(_freeze(py, log))
    # A reused venv goes back to its base: what the notebook installed last time is removed, so that
    # the notebook's install cell runs as on a fresh Colab runtime.
    with open(base, encoding="utf-8") as f:
        keep = {_name(line) for line in f if line.strip()}
    extra = sorted({_name(line) for line in _freeze(py, log).splitlines() if line.strip()} - keep)
    if extra:
        _run([py, "-m", "pip", "uninstall", "-y", "-q"] + extra, log).check_returncode()
    return py


def _freeze(py: str, log) -> str:
    done = _run([py, "-m", "pip", "freeze", "--all"], log)
    done.check_returncode()
    return done.stdout


def _name(requirement: str) -> str:
    return re.split(r"[=@ <>!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _versions(py: str, cwd: str, log) -> dict:
    code = ("import importlib.metadata as m, json\n"
            "out = {}\n"
            "for name in ('tensorflow', 'keras', 'tf-keras', 'tfmpq', 'numpy', 'ai-edge-litert', "
            "'tensorflow-model-optimization'):\n"
            "    try: out[name] = m.version(name)\n"
            "    except m.PackageNotFoundError: out[name] = None\n"
            "import tensorflow as tf\n"
            "out['tf.keras'] = tf.keras.version() if hasattr(tf.keras, 'version') else tf.keras.__version__\n"
            "print(json.dumps(out))")
    done = _run([py, "-c", code], log, cwd=cwd)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}


def _pip_alone(py: str, wheel: str, folder: str, log) -> dict:
    """What `pip install WHEEL` (no tf-keras pin) would install next to the venv's TensorFlow."""
    report = os.path.join(folder, "pip-alone.json")
    done = _run([py, "-m", "pip", "install", "--dry-run", "-q", "--report", report, wheel], log)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    with open(report, encoding="utf-8") as f:
        installs = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
                    for i in json.load(f)["install"]}
    return {"tf-keras": installs.get("tf-keras"), "tensorflow": installs.get("tensorflow")}


def _plain_text(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # IPython colours tracebacks


def _notebook_outputs(path: str) -> str:
    """The printed text (and errors) of an executed notebook (read as JSON: no Jupyter package needed)."""
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = out.get("text", "")
                texts.append("".join(text) if isinstance(text, list) else text)
            elif out.get("output_type") == "error":
                texts.append(f"ERROR {out.get('ename')}: {out.get('evalue')}")
    return _plain_text("\n".join(texts))


def check(tensorflow: str, wheel: str, out: str, python: str, fresh: bool) -> dict:
    folder = os.path.join(out, f"tf-{tensorflow}")
    os.makedirs(folder, exist_ok=True)
    result = {"tensorflow": tensorflow, "ok": False}
    start = time.perf_counter()
    with open(os.path.join(folder, "log.txt"), "w", encoding="utf-8") as log:
        try:
            py = _venv(python, tensorflow, os.path.join(folder, "venv"), fresh, log)
            result["before"] = _versions(py, folder, log)
            result["pip_alone"] = _pip_alone(py, wheel, folder, log)
            run_dir = os.path.join(folder, "run")
            shutil.rmtree(run_dir, ignore_errors=True)
            os.makedirs(run_dir)
            shutil.copy(NOTEBOOK, run_dir)
            shutil.copy(wheel, run_dir)
            nb_start = time.perf_counter()
            done = _run([py, os.path.join(ROOT, ".ci", "run_notebooks.py"),
                         os.path.join(run_dir, os.path.basename(NOTEBOOK))], log, cwd=folder)
            result["notebook_seconds"] = round(time.perf_counter() - nb_start)
            executed = re.search(r"executed copies in (\S+)", done.stdout)
            text = ""
            if executed and os.path.isfile(os.path.join(executed.group(1), os.path.basename(NOTEBOOK))):
                shutil.copy(os.path.join(executed.group(1), os.path.basename(NOTEBOOK)),
                            os.path.join(folder, "executed.ipynb"))
                text = _notebook_outputs(os.path.join(folder, "executed.ipynb"))
                for key, pattern in PATTERNS.items():
                    match = re.search(pattern, text)
                    result[key] = match.group(1) if match else None
            result["after"] = _versions(py, folder, log)
            result["ok"] = done.returncode == 0
            if not result["ok"]:
                errors = [line for line in text.splitlines() if line.startswith("ERROR ")]
                lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
                result["error"] = _plain_text(errors[0][len("ERROR "):] if errors else
                                              next((l for l in reversed(lines) if "Error" in l), lines[-1] if lines else "?"))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            result["error"] = f"{type(e).__name__}: {e}"
    result["seconds"] = round(time.perf_counter() - start)
    return result


def table(results: list[dict]) -> str:
    rows = ["| TensorFlow | Keras (default) | tf-keras the notebook installed | `pip install` alone picks | "
            "notebook 1 | float (Keras 3) | QAT | LiteRT | TFLite Micro | notebook time |",
            "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        before, after, alone = r.get("before", {}), r.get("after", {}), r.get("pip_alone", {})
        if "error" in alone:
            picks = f"fails: {alone['error']}"
        else:
            kept = alone.get("tensorflow") is None
            picks = f"tf-keras {alone.get('tf-keras')}, " + (
                "TensorFlow kept" if kept else f"TensorFlow changed to {alone.get('tensorflow')}")
        error = r.get("error", "?")
        status = "passes" if r["ok"] else f"fails: {error[:90] + ' ...' if len(error) > 90 else error}"

        def pct(key):
            return f"{r[key]}%" if r.get(key) else "-"

        rows.append(f"| {after.get('tensorflow') or r['tensorflow']} | {before.get('keras')} | "
                    f"{after.get('tf-keras')} | {picks} | {status} | {pct('float_accuracy')} | {pct('qat_accuracy')} | "
                    f"{pct('litert_accuracy')} | {pct('tflm_accuracy')} | {r.get('notebook_seconds', '-')} s |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wheel", required=True, help="the tfmpq wheel (make wheel)")
    p.add_argument("--tensorflow", nargs="+", required=True, help="TensorFlow versions, e.g. 2.16.2 2.21.0")
    p.add_argument("--out", default=os.path.join(ROOT, "build", "compat"))
    p.add_argument("--python", default=sys.executable, help="the Python the venvs are made with")
    p.add_argument("--fresh", action="store_true", help="recreate the venvs")
    p.add_argument("--table-only", action="store_true", help="rewrite OUT/table.md from OUT/results.json")
    a = p.parse_args(argv)
    if a.table_only:
        with open(os.path.join(a.out, "results.json"), encoding="utf-8") as f:
            results = json.load(f)
        text = table(results)
        with open(os.path.join(a.out, "table.md"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
        print(text)
        return 0 if all(r["ok"] for r in results) else 1
    wheel = os.path.abspath(a.wheel)
    if not os.path.isfile(wheel):
        p.error(f"no wheel at {wheel}: run `make wheel`")
    os.makedirs(a.out, exist_ok=True)
    results = []
    for version in a.tensorflow:
        print(f"TensorFlow {version}: venv, notebook 1 ...", flush=True)
        results.append(check(version, wheel, os.path.abspath(a.out), a.python, a.fresh))
        print(json.dumps(results[-1], indent=1), flush=True)
    with open(os.path.join(a.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    text = table(results)
    with open(os.path.join(a.out, "table.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(text)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
