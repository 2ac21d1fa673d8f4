"""Model builders for tfmpq (tf_keras functional models) and the demo checkpoint.

Each builder is ``build_<name>(input_shape=..., num_classes=..., **kwargs)``; ``tfmpq.zoo`` looks
them up by name. The trained checkpoints (``small_cnn_fmnist.keras``,
``dscnn_fmnist.keras``) were made by ``train_demo.py``; each has a JSON record of how beside it.
"""
from models.cnn import build_mlp, build_small_cnn
from models.dscnn import build_dscnn
from models.mobilenet import build_mobilenet_v1, build_mobilenet_v2
from models.resnet import build_resnet, build_resnet20, build_resnet32, build_resnet56
from models.vgg import build_vgg_small

__all__ = ["build_small_cnn", "build_mlp", "build_resnet", "build_resnet20", "build_resnet32",
           "build_resnet56", "build_mobilenet_v1", "build_mobilenet_v2", "build_vgg_small", "build_dscnn"]
