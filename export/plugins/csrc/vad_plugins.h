// TensorRT IPluginV3 plugins VadMemoryRead, VadMemoryUpdate and VadPrototypeFormation (namespace
// "vadedge", version "1").
//
// Written against the TensorRT 10.x/11.x plugin API (NvInferRuntime.h, NvInferPluginBase.h):
// IPluginV3 + IPluginV3OneCore/Build/Runtime, created by IPluginCreatorV3One. The math lives in
// vad_memory_math.h / vad_prototype_math.h and the launches in vad_memory_kernels.cu /
// vad_prototype_kernels.cu, which do not depend on TensorRT.
//
// NOTE: this file needs the TensorRT headers, which are not available on vadedge's development
// and CI machines; it is compiled on the target (Jetson / desktop GPU) by `vadedge export
// build-plugins` (CMakeLists.txt). See docs/tensorrt.md for what was and was not exercised.
#pragma once

#include "NvInferRuntime.h"

#include <cstdint>
#include <vector>

namespace vad
{

constexpr char const* kPluginNamespace = "vadedge";
constexpr char const* kPluginVersion = "1";
constexpr char const* kReadPluginName = "VadMemoryRead";
constexpr char const* kUpdatePluginName = "VadMemoryUpdate";
constexpr char const* kPrototypePluginName = "VadPrototypeFormation";

//! Shared boilerplate: capability interfaces, attribute (eps) serialisation, common checks.
class VadPluginBase : public nvinfer1::IPluginV3,
                      public nvinfer1::IPluginV3OneCore,
                      public nvinfer1::IPluginV3OneBuild,
                      public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit VadPluginBase(float eps) noexcept;
    VadPluginBase(VadPluginBase const& other) noexcept;
    VadPluginBase& operator=(VadPluginBase const&) = delete;
    ~VadPluginBase() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;

    // IPluginV3OneCore
    char const* getPluginNamespace() const noexcept override;
    char const* getPluginVersion() const noexcept override;

    // IPluginV3OneBuild
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;

    // IPluginV3OneRuntime
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    float eps() const noexcept { return mEps; }

protected:
    //! 0 when the I/O counts and ranks are what the plugin computes, else -1 (and a message on stderr).
    int32_t checkRanks(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, int32_t nbOutputs) const noexcept;
    virtual int32_t expectedInputs() const noexcept = 0;

    float mEps;
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialFC{};
};

//! Per-plugin boilerplate from the plugin's type and I/O counts: clone, name, output and input counts.
template <typename Derived, int32_t NbInputs, int32_t NbOutputs>
class VadPlugin : public VadPluginBase
{
public:
    using VadPluginBase::VadPluginBase;

    nvinfer1::IPluginV3* clone() noexcept override
    {
        try
        {
            return new Derived(static_cast<Derived const&>(*this));
        }
        catch (...)
        {
            return nullptr;
        }
    }
    char const* getPluginName() const noexcept override { return Derived::kName; }
    int32_t getNbOutputs() const noexcept override { return NbOutputs; }

protected:
    int32_t expectedInputs() const noexcept override { return NbInputs; }
};

//! MemoryRead(features[B,K,D], memory[B,M,D]) -> (query[B,K,D], read[B,K,D]); FP32 or FP16 I/O.
class MemoryReadPlugin final : public VadPlugin<MemoryReadPlugin, 2, 2>
{
public:
    static constexpr char const* kName = kReadPluginName;
    explicit MemoryReadPlugin(float eps) noexcept : VadPlugin(eps) {}

    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
};

//! MemoryUpdate(query[B,K,D], memory[B,M,D], gate[B] int32|bool) -> new_memory[B,M,D]; FP32 or FP16 I/O.
class MemoryUpdatePlugin final : public VadPlugin<MemoryUpdatePlugin, 3, 1>
{
public:
    static constexpr char const* kName = kUpdatePluginName;
    explicit MemoryUpdatePlugin(float eps) noexcept : VadPlugin(eps) {}

    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
};

//! PrototypeFormation(query[B,N,D], weight[M,D]) -> prototypes[B,M,D] (MPN); FP32 or FP16 I/O, weight of the
//! query's type. The weight is an input (MPN's adapted parameters are network inputs), shared by the streams.
class PrototypeFormationPlugin final : public VadPlugin<PrototypeFormationPlugin, 2, 1>
{
public:
    static constexpr char const* kName = kPrototypePluginName;
    explicit PrototypeFormationPlugin(float eps) noexcept : VadPlugin(eps) {}

    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
};

//! Creator of any of the plugins: parses the optional `eps` field (FP32/FP64) at build and deserialisation.
template <typename PluginT>
class VadPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    VadPluginCreator() noexcept;
    char const* getPluginName() const noexcept override { return PluginT::kName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFC; }
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFC{};
};

using MemoryReadPluginCreator = VadPluginCreator<MemoryReadPlugin>;
using MemoryUpdatePluginCreator = VadPluginCreator<MemoryUpdatePlugin>;
using PrototypeFormationPluginCreator = VadPluginCreator<PrototypeFormationPlugin>;

} // namespace vad

extern "C"
{
//! Registers the three creators under `libNamespace` (nullptr = "vadedge") in TensorRT's global plugin
//! registry, like initLibNvInferPlugins; for applications that dlopen the dynamic variant.
bool initVadedgePlugins(void* logger, char const* libNamespace);
}
