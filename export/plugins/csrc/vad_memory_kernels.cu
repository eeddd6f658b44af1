// CUDA kernels of the vadedge memory-addressing plugins. The arithmetic is the shared
// __host__ __device__ code of vad_memory_math.h; this file only maps it onto threads and blocks.
#include "vad_cuda_utils.cuh"
#include "vad_memory_kernels.h"
#include "vad_memory_math.h"

#include <cuda_fp16.h>

namespace vad
{
namespace
{

using cuda::alignUp;
using cuda::blockReduce;
using cuda::ceilDiv;
using cuda::kMaxSharedBytes;

constexpr int kReadThreads = 128;
constexpr int kUpdateThreads = 128; // power of two (block reductions)

// ---- MemoryRead: one thread per (b, k) row; M softmax weights in shared memory ------------
template <typename T>
__global__ void memoryReadKernel(T const* features, T const* memory, int32_t B, int32_t K, int32_t M, int32_t D,
    T* query, T* read)
{
    extern __shared__ float smem[];
    int64_t const row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (row >= static_cast<int64_t>(B) * K)
    {
        return;
    }
    int64_t const b = row / K;
    float* w = smem + static_cast<int64_t>(threadIdx.x) * M;
    memory_read_row(features + row * D, memory + b * M * D, M, D, w, query + row * D, read + row * D);
}

// ---- MemoryUpdate, step 1: scores and argmax, one thread per (b, k) row -----------------------
template <typename T>
__global__ void scoresArgmaxKernel(
    T const* query, T const* memory, int32_t B, int32_t K, int32_t M, int32_t D, float* scores, int32_t* assign)
{
    int64_t const row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (row >= static_cast<int64_t>(B) * K)
    {
        return;
    }
    int64_t const b = row / K;
    assign[row] = scores_argmax_row(query + row * D, memory + b * M * D, M, D, scores + row * M);
}

__device__ bool gateOpen(void const* gate, GateType gateType, int64_t b)
{
    return gateType == GateType::kBOOL ? static_cast<uint8_t const*>(gate)[b] != 0
                                       : static_cast<int32_t const*>(gate)[b] != 0;
}

// ---- MemoryUpdate, step 2: one block per (b, m); reductions over K, then over D -------------
// Shared memory: D floats (the updated row) + blockDim floats (reduction buffer).
template <typename T>
__global__ void updateItemKernel(T const* query, T const* memory, void const* gate, GateType gateType, int32_t K,
    int32_t M, int32_t D, float const* scores, int32_t const* assign, T* out)
{
    extern __shared__ float smem[];
    float* rowBuf = smem;
    float* red = smem + D;
    int64_t const b = blockIdx.x / M;
    int32_t const m = blockIdx.x % M;
    T const* mem = memory + b * M * D;
    T* o = out + b * M * D;
    if (!gateOpen(gate, gateType, b))
    {
        for (int d = threadIdx.x; d < D; d += blockDim.x)
        {
            o[static_cast<int64_t>(m) * D + d] = mem[static_cast<int64_t>(m) * D + d];
        }
        return;
    }
    float const* s = scores + b * K * M;
    int32_t const* a = assign + b * K;
    int const t = threadIdx.x;
    int const nt = blockDim.x;
    float const cmax = blockReduce(col_max_partial(s, K, M, m, t, nt), red, true);
    float const sum = blockReduce(col_sumexp_partial(s, K, M, m, cmax, t, nt), red, false);
    float const invSum = 1.f / sum;
    float const invVmax = inv_clamped(blockReduce(col_vmax_partial(s, a, K, M, m, cmax, invSum, t, nt), red, true));
    for (int d = t; d < D; d += nt)
    {
        rowBuf[d] = updated_elem(s, a, query + b * K * D, mem, K, M, D, m, d, cmax, invSum, invVmax);
    }
    __syncthreads();
    float const sq = blockReduce(sq_sum_partial(rowBuf, D, t, nt), red, false);
    float const inv = 1.f / fmaxf(sqrtf(sq), kEps);
    for (int d = t; d < D; d += nt)
    {
        store(o, static_cast<int64_t>(m) * D + d, rowBuf[d] * inv);
    }
}

template <typename T>
cudaError_t readImpl(void const* features, void const* memory, int32_t B, int32_t K, int32_t M, int32_t D,
    void* query, void* read, cudaStream_t stream)
{
    int64_t const rows = static_cast<int64_t>(B) * K;
    if (rows == 0)
    {
        return cudaSuccess;
    }
    int threads = kReadThreads;
    while (threads > 1 && static_cast<size_t>(threads) * M * sizeof(float) > kMaxSharedBytes)
    {
        threads /= 2;
    }
    size_t const shmem = static_cast<size_t>(threads) * M * sizeof(float);
    if (shmem > kMaxSharedBytes)
    {
        return cudaErrorInvalidValue; // more memory items than one thread's shared scratch can hold
    }
    memoryReadKernel<T><<<ceilDiv(rows, threads), threads, shmem, stream>>>(static_cast<T const*>(features),
        static_cast<T const*>(memory), B, K, M, D, static_cast<T*>(query), static_cast<T*>(read));
    return cudaGetLastError();
}

template <typename T>
cudaError_t updateImpl(void const* query, void const* memory, void const* gate, GateType gateType, int32_t B,
    int32_t K, int32_t M, int32_t D, void* out, void* workspace, cudaStream_t stream)
{
    if (B == 0)
    {
        return cudaSuccess;
    }
    size_t const shmem = (static_cast<size_t>(D) + kUpdateThreads) * sizeof(float);
    if (shmem > kMaxSharedBytes || workspace == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    auto* scores = static_cast<float*>(workspace);
    auto* assign = reinterpret_cast<int32_t*>(
        static_cast<char*>(workspace) + alignUp(static_cast<size_t>(B) * K * M * sizeof(float), 256));
    int64_t const rows = static_cast<int64_t>(B) * K;
    scoresArgmaxKernel<T><<<ceilDiv(rows, kReadThreads), kReadThreads, 0, stream>>>(
        static_cast<T const*>(query), static_cast<T const*>(memory), B, K, M, D, scores, assign);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
    {
        return err;
    }
    updateItemKernel<T><<<B * M, kUpdateThreads, shmem, stream>>>(static_cast<T const*>(query),
        static_cast<T const*>(memory), gate, gateType, K, M, D, scores, assign, static_cast<T*>(out));
    return cudaGetLastError();
}

} // namespace

cudaError_t launchMemoryRead(IoType type, void const* features, void const* memory, int32_t B, int32_t K, int32_t M,
    int32_t D, void* query, void* read, cudaStream_t stream)
{
    if (B < 0 || K < 0 || M <= 0 || D <= 0)
    {
        return cudaErrorInvalidValue;
    }
    return type == IoType::kFLOAT16 ? readImpl<__half>(features, memory, B, K, M, D, query, read, stream)
                                    : readImpl<float>(features, memory, B, K, M, D, query, read, stream);
}

size_t memoryUpdateWorkspaceSize(int32_t B, int32_t K, int32_t M)
{
    return alignUp(static_cast<size_t>(B) * K * M * sizeof(float), 256)
        + alignUp(static_cast<size_t>(B) * K * sizeof(int32_t), 256);
}

cudaError_t launchMemoryUpdate(IoType type, void const* query, void const* memory, void const* gate,
    GateType gateType, int32_t B, int32_t K, int32_t M, int32_t D, void* out, void* workspace, cudaStream_t stream)
{
    if (B < 0 || K <= 0 || M <= 0 || D <= 0)
    {
        return cudaErrorInvalidValue;
    }
    return type == IoType::kFLOAT16
        ? updateImpl<__half>(query, memory, gate, gateType, B, K, M, D, out, workspace, stream)
        : updateImpl<float>(query, memory, gate, gateType, B, K, M, D, out, workspace, stream);
}

} // namespace vad
