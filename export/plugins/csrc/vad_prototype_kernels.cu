// CUDA kernels of the VadPrototypeFormation plugin (MPN). The arithmetic is the shared
// __host__ __device__ code of vad_prototype_math.h; this file only maps it onto threads and blocks:
//   1. one thread per (b, n): the M scores query[b,n] . weight[m], written item-major to the workspace;
//   2. one block per (b, m): softmax over N (block max + block sum), the weighted sum of the queries
//      for each d (threads stride over D, each loops over N), then the L2 normalisation (block sum).
#include "vad_cuda_utils.cuh"
#include "vad_memory_kernels.h"
#include "vad_prototype_math.h"

#include <cuda_fp16.h>

namespace vad
{
namespace
{

using cuda::blockReduce;
using cuda::ceilDiv;
using cuda::kMaxSharedBytes;

constexpr int kScoreThreads = 128;
constexpr int kItemThreads = 128; // power of two (block reductions)

template <typename T>
__global__ void prototypeScoresKernel(
    T const* query, T const* weight, int32_t B, int32_t N, int32_t M, int32_t D, float* scores)
{
    int64_t const col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (col >= static_cast<int64_t>(B) * N)
    {
        return;
    }
    int64_t const b = col / N;
    int32_t const n = static_cast<int32_t>(col % N);
    prototype_scores_col(query + b * N * D, weight, N, M, D, n, scores + b * M * N);
}

// Shared memory: D floats (the pooled row) + blockDim floats (reduction buffer).
template <typename T>
__global__ void prototypeItemKernel(T const* query, int32_t N, int32_t M, int32_t D, float const* scores, T* out)
{
    extern __shared__ float smem[];
    float* rowBuf = smem;
    float* red = smem + D;
    int64_t const b = blockIdx.x / M;
    int32_t const m = blockIdx.x % M;
    float const* s = scores + (b * M + m) * N;
    T const* q = query + b * N * D;
    int const t = threadIdx.x;
    int const nt = blockDim.x;
    float const smax = blockReduce(row_max_partial(s, N, t, nt), red, true);
    float const invSum = 1.f / blockReduce(row_sumexp_partial(s, N, smax, t, nt), red, false);
    for (int d = t; d < D; d += nt)
    {
        rowBuf[d] = pooled_elem(s, q, N, D, d, smax, invSum);
    }
    __syncthreads();
    float const sq = blockReduce(sq_sum_partial(rowBuf, D, t, nt), red, false);
    float const inv = 1.f / fmaxf(sqrtf(sq), kEps);
    for (int d = t; d < D; d += nt)
    {
        store(out + (b * M + m) * D, d, rowBuf[d] * inv);
    }
}

template <typename T>
cudaError_t prototypeImpl(void const* query, void const* weight, int32_t B, int32_t N, int32_t M, int32_t D,
    void* out, void* workspace, cudaStream_t stream)
{
    if (B == 0)
    {
        return cudaSuccess;
    }
    size_t const shmem = (static_cast<size_t>(D) + kItemThreads) * sizeof(float);
    if (shmem > kMaxSharedBytes || workspace == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    auto* scores = static_cast<float*>(workspace);
    int64_t const cols = static_cast<int64_t>(B) * N;
    prototypeScoresKernel<T><<<ceilDiv(cols, kScoreThreads), kScoreThreads, 0, stream>>>(
        static_cast<T const*>(query), static_cast<T const*>(weight), B, N, M, D, scores);
    cudaError_t const err = cudaGetLastError();
    if (err != cudaSuccess)
    {
        return err;
    }
    prototypeItemKernel<T><<<B * M, kItemThreads, shmem, stream>>>(
        static_cast<T const*>(query), N, M, D, scores, static_cast<T*>(out));
    return cudaGetLastError();
}

} // namespace

size_t prototypeFormationWorkspaceSize(int32_t B, int32_t N, int32_t M)
{
    return cuda::alignUp(static_cast<size_t>(B) * M * N * sizeof(float), 256);
}

cudaError_t launchPrototypeFormation(IoType type, void const* query, void const* weight, int32_t B, int32_t N,
    int32_t M, int32_t D, void* out, void* workspace, cudaStream_t stream)
{
    if (B < 0 || N <= 0 || M <= 0 || D <= 0)
    {
        return cudaErrorInvalidValue;
    }
    return type == IoType::kFLOAT16
        ? prototypeImpl<__half>(query, weight, B, N, M, D, out, workspace, stream)
        : prototypeImpl<float>(query, weight, B, N, M, D, out, workspace, stream);
}

} // namespace vad
