"""TensorRT plugins for vadedge's memory-addressing nodes: the graph pass, the CUDA/C++ sources and
their builds (the target's CMake build, and a host build of the kernel math for checks without a GPU)."""

from .build import DYNAMIC_LIBRARY_NAME, LIBRARY_NAME, build_plugins, default_cuda_archs
from .graph import PLUGIN_NAMESPACE, PLUGIN_OPS, PLUGIN_VERSION, plugin_nodes, replace_with_plugins
from .host import CSRC, HostKernels, PluginBuildError, build_host_library

__all__ = [
    "CSRC",
    "DYNAMIC_LIBRARY_NAME",
    "HostKernels",
    "LIBRARY_NAME",
    "PLUGIN_NAMESPACE",
    "PLUGIN_OPS",
    "PLUGIN_VERSION",
    "PluginBuildError",
    "build_host_library",
    "build_plugins",
    "default_cuda_archs",
    "plugin_nodes",
    "replace_with_plugins",
]
