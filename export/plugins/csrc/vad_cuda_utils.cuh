// Small CUDA helpers shared by the vadedge plugin kernels (vad_memory_kernels.cu,
// vad_prototype_kernels.cu): launch arithmetic and a shared-memory block reduction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

namespace vad
{
namespace cuda
{

constexpr size_t kMaxSharedBytes = 48 * 1024; // default dynamic shared memory limit per block

inline int ceilDiv(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

inline size_t alignUp(size_t x, size_t a) { return (x + a - 1) / a * a; }

// Max (isMax) or sum of one float per thread over the block; buf holds blockDim.x floats and
// blockDim.x must be a power of two. Every thread of the block must call it.
__device__ __forceinline__ float blockReduce(float v, float* buf, bool isMax)
{
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1)
    {
        if (threadIdx.x < stride)
        {
            float const o = buf[threadIdx.x + stride];
            buf[threadIdx.x] = isMax ? fmaxf(buf[threadIdx.x], o) : buf[threadIdx.x] + o;
        }
        __syncthreads();
    }
    float const r = buf[0];
    __syncthreads();
    return r;
}

} // namespace cuda
} // namespace vad
