// IPluginV3 implementation of VadMemoryRead / VadMemoryUpdate / VadPrototypeFormation. See vad_plugins.h.
//
// Two builds of this file (CMakeLists.txt):
//   libvadedge_plugins.so          VADEDGE_STATIC_REGISTRATION=1: creators register themselves when
//                                  the library is loaded (ctypes.CDLL, DeepStream custom-lib-path,
//                                  ONNX Runtime trt_extra_plugin_lib_paths, trtexec --staticPlugins).
//   libvadedge_plugins_dynamic.so  VADEDGE_STATIC_REGISTRATION=0: exports getCreators/setLoggerFinder
//                                  for IPluginRegistry::loadLibrary (trtexec --dynamicPlugins,
//                                  plugins serialised into version-compatible plans).
#include "vad_plugins.h"

#include "vad_memory_kernels.h"
#include "vad_memory_math.h"

#include <cstdio>
#include <cstring>
#include <exception>

using namespace nvinfer1;

#ifndef VADEDGE_STATIC_REGISTRATION
#define VADEDGE_STATIC_REGISTRATION 1
#endif

namespace vad
{
namespace
{

void logError(char const* plugin, char const* msg) noexcept
{
    std::fprintf(stderr, "[vadedge] %s: %s\n", plugin, msg);
}

bool isFloatType(DataType t) noexcept
{
    return t == DataType::kFLOAT || t == DataType::kHALF;
}

IoType ioType(DataType t) noexcept
{
    return t == DataType::kHALF ? IoType::kFLOAT16 : IoType::kFLOAT32;
}

int32_t toInt(int64_t v) noexcept
{
    return static_cast<int32_t>(v);
}

} // namespace

// ---- VadPluginBase --------------------------------------------------------------------------

VadPluginBase::VadPluginBase(float eps) noexcept
    : mEps(eps)
{
}

VadPluginBase::VadPluginBase(VadPluginBase const& other) noexcept
    : IPluginV3(other)
    , IPluginV3OneCore(other)
    , IPluginV3OneBuild(other)
    , IPluginV3OneRuntime(other)
    , mEps(other.mEps)
{
}

IPluginCapability* VadPluginBase::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

char const* VadPluginBase::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

char const* VadPluginBase::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

int32_t VadPluginBase::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs < 1 || !isFloatType(inputTypes[0]))
    {
        return -1;
    }
    for (int32_t i = 0; i < nbOutputs; ++i)
    {
        outputTypes[i] = inputTypes[0];
    }
    return 0;
}

IPluginV3* VadPluginBase::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* VadPluginBase::getFieldsToSerialize() noexcept
{
    // Rebuilt on every call so clones never point into another object's storage.
    mSerialFields.clear();
    mSerialFields.emplace_back("eps", &mEps, PluginFieldType::kFLOAT32, 1);
    mSerialFC.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialFC.fields = mSerialFields.data();
    return &mSerialFC;
}

int32_t VadPluginBase::checkRanks(PluginTensorDesc const* in, int32_t nbInputs, int32_t nbOutputs) const noexcept
{
    if (nbInputs != expectedInputs() || nbOutputs != getNbOutputs())
    {
        logError(getPluginName(), "unexpected number of inputs or outputs");
        return -1;
    }
    if (in[0].dims.nbDims != 3 || in[1].dims.nbDims != 3)
    {
        logError(getPluginName(), "inputs must be rank-3 tensors [B,K,D] and [B,M,D]");
        return -1;
    }
    return 0;
}

// ---- MemoryReadPlugin -----------------------------------------------------------------------

int32_t MemoryReadPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& /*exprBuilder*/) noexcept
{
    if (nbInputs != 2 || nbOutputs != 2 || inputs[0].nbDims != 3)
    {
        return -1;
    }
    outputs[0] = inputs[0]; // query
    outputs[1] = inputs[0]; // read
    return 0;
}

bool MemoryReadPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t /*nbInputs*/, int32_t /*nbOutputs*/) noexcept
{
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    return pos == 0 ? isFloatType(d.type) : d.type == inOut[0].desc.type;
}

int32_t MemoryReadPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != 2 || nbOutputs != 2 || in[0].desc.dims.nbDims != 3 || in[1].desc.dims.nbDims != 3)
    {
        logError(kName, "expects features [B,K,D] and memory [B,M,D] and two outputs");
        return -1;
    }
    return 0;
}

int32_t MemoryReadPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (checkRanks(in, nbInputs, nbOutputs) != 0)
    {
        return -1;
    }
    if (in[0].dims.d[0] != in[1].dims.d[0] || in[0].dims.d[2] != in[1].dims.d[2])
    {
        logError(kName, "features and memory disagree on batch or feature size");
        return -1;
    }
    return 0;
}

int32_t MemoryReadPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    auto const& f = inputDesc[0].dims;
    cudaError_t const err = launchMemoryRead(ioType(inputDesc[0].type), inputs[0], inputs[1], toInt(f.d[0]),
        toInt(f.d[1]), toInt(inputDesc[1].dims.d[1]), toInt(f.d[2]), outputs[0], outputs[1], stream);
    if (err != cudaSuccess)
    {
        logError(kName, cudaGetErrorString(err));
        return -1;
    }
    return 0;
}

// ---- MemoryUpdatePlugin ---------------------------------------------------------------------

int32_t MemoryUpdatePlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs != 3 || nbOutputs != 1 || !isFloatType(inputTypes[1]))
    {
        return -1;
    }
    outputTypes[0] = inputTypes[1]; // new memory has the memory's type
    return 0;
}

int32_t MemoryUpdatePlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& /*exprBuilder*/) noexcept
{
    if (nbInputs != 3 || nbOutputs != 1 || inputs[1].nbDims != 3)
    {
        return -1;
    }
    outputs[0] = inputs[1];
    return 0;
}

bool MemoryUpdatePlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t /*nbInputs*/, int32_t /*nbOutputs*/) noexcept
{
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    switch (pos)
    {
    case 0: return isFloatType(d.type);                                    // query
    case 1: return d.type == inOut[0].desc.type;                           // memory
    case 2: return d.type == DataType::kINT32 || d.type == DataType::kBOOL; // gate
    case 3: return d.type == inOut[0].desc.type;                           // new memory
    default: return false;
    }
}

int32_t MemoryUpdatePlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != 3 || nbOutputs != 1 || in[0].desc.dims.nbDims != 3 || in[1].desc.dims.nbDims != 3
        || in[2].desc.dims.nbDims != 1)
    {
        logError(kName, "expects query [B,K,D], memory [B,M,D], gate [B] and one output");
        return -1;
    }
    return 0;
}

size_t MemoryUpdatePlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (nbInputs != 3)
    {
        return 0;
    }
    // Sized for the largest shapes of the optimisation profile.
    return memoryUpdateWorkspaceSize(
        toInt(inputs[0].max.d[0]), toInt(inputs[0].max.d[1]), toInt(inputs[1].max.d[1]));
}

int32_t MemoryUpdatePlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (checkRanks(in, nbInputs, nbOutputs) != 0)
    {
        return -1;
    }
    if (in[2].dims.nbDims != 1 || in[2].dims.d[0] != in[0].dims.d[0] || in[0].dims.d[0] != in[1].dims.d[0]
        || in[0].dims.d[2] != in[1].dims.d[2])
    {
        logError(kName, "query, memory and gate disagree on batch or feature size");
        return -1;
    }
    return 0;
}

int32_t MemoryUpdatePlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    auto const& q = inputDesc[0].dims;
    GateType const gateType = inputDesc[2].type == DataType::kBOOL ? GateType::kBOOL : GateType::kINT32;
    cudaError_t const err = launchMemoryUpdate(ioType(inputDesc[0].type), inputs[0], inputs[1], inputs[2], gateType,
        toInt(q.d[0]), toInt(q.d[1]), toInt(inputDesc[1].dims.d[1]), toInt(q.d[2]), outputs[0], workspace, stream);
    if (err != cudaSuccess)
    {
        logError(kName, cudaGetErrorString(err));
        return -1;
    }
    return 0;
}

// ---- PrototypeFormationPlugin ---------------------------------------------------------------

int32_t PrototypeFormationPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& /*exprBuilder*/) noexcept
{
    if (nbInputs != 2 || nbOutputs != 1 || inputs[0].nbDims != 3 || inputs[1].nbDims != 2)
    {
        return -1;
    }
    outputs[0].nbDims = 3;
    outputs[0].d[0] = inputs[0].d[0]; // B
    outputs[0].d[1] = inputs[1].d[0]; // M
    outputs[0].d[2] = inputs[0].d[2]; // D
    return 0;
}

bool PrototypeFormationPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t /*nbInputs*/, int32_t /*nbOutputs*/) noexcept
{
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    switch (pos)
    {
    case 0: return isFloatType(d.type);          // query
    case 1: return d.type == inOut[0].desc.type; // weight
    case 2: return d.type == inOut[0].desc.type; // prototypes
    default: return false;
    }
}

int32_t PrototypeFormationPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != 2 || nbOutputs != 1 || in[0].desc.dims.nbDims != 3 || in[1].desc.dims.nbDims != 2)
    {
        logError(kName, "expects query [B,N,D], weight [M,D] and one output");
        return -1;
    }
    return 0;
}

size_t PrototypeFormationPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (nbInputs != 2)
    {
        return 0;
    }
    // Sized for the largest shapes of the optimisation profile.
    return prototypeFormationWorkspaceSize(
        toInt(inputs[0].max.d[0]), toInt(inputs[0].max.d[1]), toInt(inputs[1].max.d[0]));
}

int32_t PrototypeFormationPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != expectedInputs() || nbOutputs != getNbOutputs())
    {
        logError(kName, "unexpected number of inputs or outputs");
        return -1;
    }
    if (in[0].dims.nbDims != 3 || in[1].dims.nbDims != 2 || in[0].dims.d[2] != in[1].dims.d[1])
    {
        logError(kName, "query [B,N,D] and weight [M,D] must agree on the feature size D");
        return -1;
    }
    return 0;
}

int32_t PrototypeFormationPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    auto const& q = inputDesc[0].dims;
    cudaError_t const err = launchPrototypeFormation(ioType(inputDesc[0].type), inputs[0], inputs[1], toInt(q.d[0]),
        toInt(q.d[1]), toInt(inputDesc[1].dims.d[0]), toInt(q.d[2]), outputs[0], workspace, stream);
    if (err != cudaSuccess)
    {
        logError(kName, cudaGetErrorString(err));
        return -1;
    }
    return 0;
}

// ---- creators -------------------------------------------------------------------------------

template <typename PluginT>
VadPluginCreator<PluginT>::VadPluginCreator() noexcept
{
    mFields.emplace_back("eps", nullptr, PluginFieldType::kFLOAT32, 1);
    mFC.nbFields = static_cast<int32_t>(mFields.size());
    mFC.fields = mFields.data();
}

template <typename PluginT>
IPluginV3* VadPluginCreator<PluginT>::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        float eps = kEps;
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
        {
            PluginField const& f = fc->fields[i];
            if (f.name == nullptr || std::strcmp(f.name, "eps") != 0 || f.data == nullptr || f.length < 1)
            {
                continue; // unknown fields (e.g. ONNX attributes this version does not use) are ignored
            }
            if (f.type == PluginFieldType::kFLOAT32)
            {
                eps = *static_cast<float const*>(f.data);
            }
            else if (f.type == PluginFieldType::kFLOAT64)
            {
                eps = static_cast<float>(*static_cast<double const*>(f.data));
            }
        }
        if (!(eps > 0.f))
        {
            logError(PluginT::kName, "eps must be > 0");
            return nullptr;
        }
        return new PluginT(eps);
    }
    catch (std::exception const&)
    {
        return nullptr;
    }
}

template class VadPluginCreator<MemoryReadPlugin>;
template class VadPluginCreator<MemoryUpdatePlugin>;
template class VadPluginCreator<PrototypeFormationPlugin>;

namespace
{
MemoryReadPluginCreator& readCreator()
{
    static MemoryReadPluginCreator creator;
    return creator;
}

MemoryUpdatePluginCreator& updateCreator()
{
    static MemoryUpdatePluginCreator creator;
    return creator;
}

PrototypeFormationPluginCreator& prototypeCreator()
{
    static PrototypeFormationPluginCreator creator;
    return creator;
}

bool registerAll()
{
    IPluginRegistry* registry = getPluginRegistry();
    if (registry == nullptr)
    {
        return false;
    }
    bool ok = registry->registerCreator(readCreator(), kPluginNamespace);
    ok = registry->registerCreator(updateCreator(), kPluginNamespace) && ok;
    ok = registry->registerCreator(prototypeCreator(), kPluginNamespace) && ok;
    return ok;
}

#if VADEDGE_STATIC_REGISTRATION
struct StaticRegistration
{
    StaticRegistration()
    {
        if (!registerAll())
        {
            logError("vadedge", "registering the plugin creators failed (already registered?)");
        }
    }
};
StaticRegistration const gStaticRegistration{};
#endif

} // namespace
} // namespace vad

extern "C"
{

bool initVadedgePlugins(void* /*logger*/, char const* libNamespace)
{
    if (libNamespace != nullptr && libNamespace[0] != '\0' && std::strcmp(libNamespace, vad::kPluginNamespace) != 0)
    {
        vad::logError("vadedge", "the plugins live in namespace \"vadedge\"; another namespace was requested");
        return false;
    }
#if VADEDGE_STATIC_REGISTRATION
    return true; // registered when the library was loaded
#else
    static bool const registered = vad::registerAll();
    return registered;
#endif
}

#if !VADEDGE_STATIC_REGISTRATION
// Entry points that IPluginRegistry::loadLibrary looks up in a plugin shared library.
void setLoggerFinder(nvinfer1::ILoggerFinder* /*finder*/) {}

nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static nvinfer1::IPluginCreatorInterface* const creators[]
        = {&vad::readCreator(), &vad::updateCreator(), &vad::prototypeCreator()};
    nbCreators = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}
#endif

} // extern "C"
