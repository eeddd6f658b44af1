"""Compile-check of the IPluginV3 C++ (csrc/vad_plugins.cpp) WITHOUT TensorRT.

TensorRT's headers cannot be installed here, so this test writes a small declaration-only stand-in
for NvInferRuntime.h - authored for vadedge from the signatures in NVIDIA's TensorRT 10/11 API docs
(IPluginV3, IPluginV3OneCore/Build/Runtime, IPluginCreatorV3One, PluginField, DynamicPluginTensorDesc,
IPluginRegistry::registerCreator, ...) - and runs `g++ -fsyntax-only` on the plugin source for both
registration variants. Pure virtual methods are pure here too, so a missing or mis-typed override
fails (the plugins are instantiated with `new`). It proves the code is consistent with those
signatures; it is NOT a build against the real headers, which happens only on the target.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vadedge.export.plugins import CSRC
from vadedge.export.plugins.host import find_cxx

STUB = r"""
#pragma once
#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>
namespace nvinfer1 {
using AsciiChar = char;
constexpr int32_t MAX_DIMS = 8;
enum class DataType : int32_t { kFLOAT = 0, kHALF = 1, kINT8 = 2, kINT32 = 3, kBOOL = 4, kUINT8 = 5, kFP8 = 6,
                                kBF16 = 7, kINT64 = 8, kINT4 = 9 };
enum class TensorFormat : int32_t { kLINEAR = 0, kCHW2 = 1, kHWC8 = 2 };
enum class PluginFieldType : int32_t { kFLOAT16 = 0, kFLOAT32 = 1, kFLOAT64 = 2, kINT8 = 3, kINT16 = 4, kINT32 = 5,
                                       kCHAR = 6, kDIMS = 7, kUNKNOWN = 8 };
enum class TensorRTPhase : int32_t { kBUILD = 0, kRUNTIME = 1 };
enum class PluginCapabilityType : int32_t { kCORE = 0, kBUILD = 1, kRUNTIME = 2 };
enum class APILanguage : int32_t { kCPP = 0, kPYTHON = 1 };
class Dims64 { public: int32_t nbDims; int64_t d[MAX_DIMS]; };
using Dims = Dims64;
class IDimensionExpr;
class DimsExprs { public: int32_t nbDims; IDimensionExpr const* d[MAX_DIMS]; };
class IExprBuilder;
struct PluginTensorDesc { Dims dims; DataType type; TensorFormat format; float scale; };
struct DynamicPluginTensorDesc { PluginTensorDesc desc; Dims min; Dims max; Dims opt; };
class PluginField {
public:
    AsciiChar const* name; void const* data; PluginFieldType type; int32_t length;
    PluginField(AsciiChar const* const name_ = nullptr, void const* const data_ = nullptr,
                PluginFieldType const type_ = PluginFieldType::kUNKNOWN, int32_t const length_ = 0) noexcept
        : name(name_), data(data_), type(type_), length(length_) {}
};
struct PluginFieldCollection { int32_t nbFields{}; PluginField const* fields{}; };
class InterfaceInfo { public: char const* kind; int32_t major; int32_t minor; };
class IVersionedInterface {
public:
    virtual APILanguage getAPILanguage() const noexcept { return APILanguage::kCPP; }
    virtual InterfaceInfo getInterfaceInfo() const noexcept = 0;
    virtual ~IVersionedInterface() noexcept = default;
protected:
    IVersionedInterface() = default;
    IVersionedInterface(IVersionedInterface const&) = default;
    IVersionedInterface(IVersionedInterface&&) = default;
    IVersionedInterface& operator=(IVersionedInterface const&) & = default;
    IVersionedInterface& operator=(IVersionedInterface&&) & = default;
};
class IPluginResourceContext;
class ILogger;
class ILoggerFinder { public: virtual ILogger* findLogger() = 0; protected: virtual ~ILoggerFinder() = default; };
namespace v_1_0 {
class IPluginCapability : public IVersionedInterface {};
class IPluginCreatorInterface : public IVersionedInterface {
public:
    ~IPluginCreatorInterface() noexcept override = default;
protected:
    IPluginCreatorInterface() = default;
    IPluginCreatorInterface(IPluginCreatorInterface const&) = default;
};
class IPluginV3 : public IVersionedInterface {
public:
    InterfaceInfo getInterfaceInfo() const noexcept override { return InterfaceInfo{"PLUGIN", 1, 0}; }
    virtual IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept = 0;
    virtual IPluginV3* clone() noexcept = 0;
};
class IPluginV3OneCore : public IPluginCapability {
public:
    InterfaceInfo getInterfaceInfo() const noexcept override { return InterfaceInfo{"PLUGIN_V3ONE_CORE", 1, 0}; }
    virtual AsciiChar const* getPluginName() const noexcept = 0;
    virtual AsciiChar const* getPluginVersion() const noexcept = 0;
    virtual AsciiChar const* getPluginNamespace() const noexcept = 0;
};
class IPluginV3OneBuild : public IPluginCapability {
public:
    InterfaceInfo getInterfaceInfo() const noexcept override { return InterfaceInfo{"PLUGIN_V3ONE_BUILD", 1, 0}; }
    virtual int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
        DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept = 0;
    virtual int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, const DataType* inputTypes,
        int32_t nbInputs) const noexcept = 0;
    virtual int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept = 0;
    virtual bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept = 0;
    virtual int32_t getNbOutputs() const noexcept = 0;
    virtual size_t getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept { return 0; }
    virtual int32_t getValidTactics(int32_t* tactics, int32_t nbTactics) noexcept { return 0; }
    virtual int32_t getNbTactics() noexcept { return 0; }
    virtual char const* getTimingCacheID() noexcept { return nullptr; }
    virtual int32_t getFormatCombinationLimit() noexcept { return 100; }
    virtual char const* getMetadataString() noexcept { return nullptr; }
};
class IPluginV3OneRuntime : public IPluginCapability {
public:
    InterfaceInfo getInterfaceInfo() const noexcept override { return InterfaceInfo{"PLUGIN_V3ONE_RUNTIME", 1, 0}; }
    virtual int32_t setTactic(int32_t tactic) noexcept { return 0; }
    virtual int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept = 0;
    virtual int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept = 0;
    virtual IPluginV3* attachToContext(IPluginResourceContext* context) noexcept = 0;
    virtual PluginFieldCollection const* getFieldsToSerialize() noexcept = 0;
};
class IPluginCreatorV3One : public IPluginCreatorInterface {
public:
    InterfaceInfo getInterfaceInfo() const noexcept override { return InterfaceInfo{"PLUGIN CREATOR_V3ONE", 1, 0}; }
    virtual IPluginV3* createPlugin(AsciiChar const* name, PluginFieldCollection const* fc,
        TensorRTPhase phase) noexcept = 0;
    virtual PluginFieldCollection const* getFieldNames() noexcept = 0;
    virtual AsciiChar const* getPluginName() const noexcept = 0;
    virtual AsciiChar const* getPluginVersion() const noexcept = 0;
    virtual AsciiChar const* getPluginNamespace() const noexcept = 0;
    IPluginCreatorV3One() = default;
    virtual ~IPluginCreatorV3One() = default;
protected:
    IPluginCreatorV3One(IPluginCreatorV3One const&) = default;
};
} // namespace v_1_0
using IPluginCapability = v_1_0::IPluginCapability;
using IPluginCreatorInterface = v_1_0::IPluginCreatorInterface;
using IPluginV3 = v_1_0::IPluginV3;
using IPluginV3OneCore = v_1_0::IPluginV3OneCore;
using IPluginV3OneBuild = v_1_0::IPluginV3OneBuild;
using IPluginV3OneRuntime = v_1_0::IPluginV3OneRuntime;
using IPluginCreatorV3One = v_1_0::IPluginCreatorV3One;
class IPluginRegistry {
public:
    virtual bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const pluginNamespace) noexcept = 0;
protected:
    virtual ~IPluginRegistry() noexcept = default;
};
} // namespace nvinfer1
extern "C" nvinfer1::IPluginRegistry* getPluginRegistry();
"""


def _cuda_include() -> Path | None:
    nvcc = shutil.which("nvcc")
    candidates = [Path(nvcc).resolve().parent.parent / "include"] if nvcc else []
    candidates += [Path("/usr/local/cuda/include")]
    return next((c for c in candidates if (c / "cuda_runtime_api.h").is_file()), None)


@pytest.mark.parametrize("static_registration", [1, 0])
def test_plugin_source_is_consistent_with_the_iplugin_v3_api(tmp_path, static_registration):
    cxx, cuda_inc = find_cxx(), _cuda_include()
    if cxx is None or cuda_inc is None:
        pytest.skip("needs a C++ compiler and the CUDA runtime headers")
    (tmp_path / "NvInferRuntime.h").write_text(STUB)
    proc = subprocess.run(
        [
            cxx,
            "-std=c++17",
            "-fsyntax-only",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wno-unused-parameter",
            f"-DVADEDGE_STATIC_REGISTRATION={static_registration}",
            f"-I{tmp_path}",
            f"-I{CSRC}",
            f"-I{cuda_inc}",
            str(CSRC / "vad_plugins.cpp"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_every_plugin_op_of_the_graph_pass_has_a_registered_creator():
    """Each plugin node the graph pass can emit has a plugin class, a creator in the registration and in
    getCreators() of the dynamic variant (a missing one would only show up on the target)."""
    from vadedge.export.plugins import PLUGIN_OPS

    header = (CSRC / "vad_plugins.h").read_text()
    source = (CSRC / "vad_plugins.cpp").read_text()
    creators = {
        "VadMemoryRead": "readCreator()",
        "VadMemoryUpdate": "updateCreator()",
        "VadPrototypeFormation": "prototypeCreator()",
    }
    assert set(PLUGIN_OPS.values()) == set(creators)
    get_creators = source[source.index("getCreators(") :]
    for op, creator in creators.items():
        assert f'"{op}"' in header
        assert f"registry->registerCreator({creator}, kPluginNamespace)" in source
        assert f"&vad::{creator}" in get_creators
