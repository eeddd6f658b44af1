// CUDA launchers for the vadedge plugins (memory addressing, MPN prototype formation). Independent of TensorRT: the plugin
// classes (vad_plugins.cpp) call these, and the kernels compile with nvcc alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

namespace vad
{

enum class IoType : int32_t
{
    kFLOAT32 = 0,
    kFLOAT16 = 1,
};

enum class GateType : int32_t
{
    kBOOL = 0,  // one byte per stream
    kINT32 = 1, // int32 per stream
};

// Fused normalise -> similarity -> softmax over M -> weighted read, one thread per query row.
// features, query, read: [B,K,D]; memory: [B,M,D]; all of `type`.
cudaError_t launchMemoryRead(IoType type, void const* features, void const* memory, int32_t B, int32_t K, int32_t M,
    int32_t D, void* query, void* read, cudaStream_t stream);

// Bytes of device workspace launchMemoryUpdate needs (scores [B,K,M] float32 + argmax [B,K] int32).
size_t memoryUpdateWorkspaceSize(int32_t B, int32_t K, int32_t M);

// Gated MNAD write. query: [B,K,D]; memory, out: [B,M,D]; gate: [B] of `gateType`.
cudaError_t launchMemoryUpdate(IoType type, void const* query, void const* memory, void const* gate,
    GateType gateType, int32_t B, int32_t K, int32_t M, int32_t D, void* out, void* workspace, cudaStream_t stream);

// Bytes of device workspace launchPrototypeFormation needs (scores [B,M,N] float32).
size_t prototypeFormationWorkspaceSize(int32_t B, int32_t N, int32_t M);

// MPN prototype formation (vad_prototype_kernels.cu). query: [B,N,D]; weight: [M,D] (shared by the
// streams); out: [B,M,D]; all of `type`.
cudaError_t launchPrototypeFormation(IoType type, void const* query, void const* weight, int32_t B, int32_t N,
    int32_t M, int32_t D, void* out, void* workspace, cudaStream_t stream);

} // namespace vad
