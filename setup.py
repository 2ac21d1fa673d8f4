"""tfmpq: mixed-precision (per-layer N-bit) quantization of Keras models, searched and deployed."""
from setuptools import find_packages, setup

setup(
    name="tfmpq",
    version="0.1.0",
    description="Find, train and deploy mixed-precision quantized Keras models (TFLite / TFLite Micro).",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["tfmpq", "tfmpq.*"]),
    package_data={"tfmpq": ["data/*.npz", "data/*.md", "zoo/checkpoints/*.keras", "zoo/checkpoints/*.json"]},
    # tf-keras X.Y requires TensorFlow X.Y; both ranges are open so that pip can take the tf-keras of the
    # TensorFlow already installed (Colab's is not ours to choose). Pin it in the same command, as the
    # notebooks do ("tf-keras~=X.Y.0"): without a pin and without an installed tf-keras, pip takes the
    # newest tf-keras and upgrades TensorFlow to match (README, "Notebooks and Colab").
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "tf-keras>=2.16,<2.22",
        "tensorflow-model-optimization==0.8.1",
        "deap>=1.4",
        "numpy",
        "matplotlib",
        "tqdm",
    ],
    extras_require={
        "deploy": ["ai-edge-litert", "tflite-micro"],
        "data": ["scikit-learn"],
        # Sensitivity-guided searches: the ILP (scipy.optimize.milp) and clustered TPE (Optuna's TPE,
        # scikit-learn's k-means). Optuna < 6: TPESampler's `gamma` (deprecated in 4.9) is scheduled for removal.
        "search": ["scipy>=1.9", "optuna>=4.0,<6", "scikit-learn>=1.4"],
        "dev": ["pytest", "scikit-learn", "scipy>=1.9", "optuna>=4.0,<6", "ai-edge-litert", "tflite-micro", "nbformat",
                "nbclient", "ipykernel"],
        "ray": ["ray[default]"],
    },
    entry_points={"console_scripts": ["tfmpq=tfmpq.cli:main"]},
)
