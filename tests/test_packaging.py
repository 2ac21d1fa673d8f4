"""What `pip install tfmpq` installs: the package only (issue 18), with its data and checkpoints."""
import glob
import os

from setuptools import find_packages
from setuptools._distutils.core import run_setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup():
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return run_setup("setup.py", stop_after="init")
    finally:
        os.chdir(cwd)


def test_only_tfmpq_is_installed_and_every_zoo_checkpoint_ships_with_its_record():
    dist = _setup()
    assert dist.packages and all(p == "tfmpq" or p.startswith("tfmpq.") for p in dist.packages), dist.packages
    assert set(dist.packages) == set(find_packages(ROOT, include=["tfmpq", "tfmpq.*"]))
    assert "tfmpq.zoo" in dist.packages and "tfmpq.data" in dist.packages
    shipped = [f for pattern in dist.package_data["tfmpq"] for f in glob.glob(os.path.join(ROOT, "tfmpq", pattern))]
    names = {os.path.relpath(f, os.path.join(ROOT, "tfmpq")) for f in shipped}
    from tfmpq import zoo

    for name in zoo.checkpoints():
        assert {f"zoo/checkpoints/{name}.keras", f"zoo/checkpoints/{name}.json"} <= names, name
    assert "data/fashion_mnist_subset.npz" in names
    # No module shadows a package of the same name (tfmpq/data.py beside tfmpq/data/ did).
    for package in dist.packages:
        folder = os.path.join(ROOT, *package.split("."))
        assert not os.path.exists(folder + ".py"), f"{folder}.py shadows the package {package}"
