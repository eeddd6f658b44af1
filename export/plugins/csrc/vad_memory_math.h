// vadedge memory-addressing math, shared by the CUDA kernels and the host reference library.
//
// Every function here is `__host__ __device__` under nvcc and plain `inline` under a host
// compiler, so the SAME code computes the plugin on the GPU and is checked on the CPU against
// NumPy / the ONNX function bodies / train/memory.py (tests/unit/test_plugins_kernels.py).
//
// Semantics (the contract of the `vadedge` ONNX domain, version 1):
//   MemoryRead(features[B,K,D], memory[B,M,D]) -> (query, read)
//     query = features / max(||features||_2 over D, eps)
//     w     = softmax over M of query . memory^T
//     read  = w . memory
//   MemoryUpdate(query[B,K,D], memory[B,M,D], gate[B]) -> new_memory[B,M,D]
//     scores = query . memory^T                      (B,K,M)
//     onehot = one-hot of argmax over M (first maximum wins, like torch.argmax / ONNX ArgMax)
//     v      = softmax over K (per stream) of scores, times onehot
//     v      = v / max(max over K of v, eps)         (per item m)
//     delta  = v^T . query                           (B,M,D)
//     new    = (memory + delta) / max(||memory + delta||_2, eps);  gate ? new : memory
//
// Reductions over K are written as "partial" functions over a strided index range
// (k0, k0 + dk, ...): the host calls them with (0, 1); a CUDA block calls them with
// (threadIdx.x, blockDim.x) and combines the partials with a block reduction.
// All arithmetic is float32, whatever the I/O type.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define VAD_HD __host__ __device__ __forceinline__
#else
#define VAD_HD inline
#endif

namespace vad
{

constexpr float kEps = 1e-12f;

// ---- element load/store with conversion to/from float ------------------------------------
VAD_HD float load(float const* p, int64_t i) { return p[i]; }
VAD_HD void store(float* p, int64_t i, float v) { p[i] = v; }
#if defined(__CUDACC__)
VAD_HD float load(__half const* p, int64_t i) { return __half2float(p[i]); }
VAD_HD void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }
#endif

VAD_HD float neg_inf() { return -INFINITY; }

// ---- MemoryRead ---------------------------------------------------------------------------

// 1 / max(||x||_2, eps) of a row of D values.
template <typename T>
VAD_HD float inv_l2_norm(T const* x, int D)
{
    float s = 0.f;
    for (int d = 0; d < D; ++d)
    {
        float const v = load(x, d);
        s += v * v;
    }
    return 1.f / fmaxf(sqrtf(s), kEps);
}

// Similarity of the normalised row x*inv with memory item m: sum_d x[d]*inv*mem[m,d].
template <typename TX, typename TM>
VAD_HD float similarity(TX const* x, float inv, TM const* mem, int m, int D)
{
    float s = 0.f;
    for (int d = 0; d < D; ++d)
    {
        s += load(x, d) * inv * load(mem, static_cast<int64_t>(m) * D + d);
    }
    return s;
}

// One query row of MemoryRead, fused: normalise -> similarity -> softmax over M -> weighted read.
// f: features row [D]; mem: this stream's bank [M*D]; w: scratch of M floats; q, r: output rows [D].
template <typename T>
VAD_HD void memory_read_row(T const* f, T const* mem, int M, int D, float* w, T* q, T* r)
{
    float const inv = inv_l2_norm(f, D);
    float smax = neg_inf();
    for (int m = 0; m < M; ++m)
    {
        w[m] = similarity(f, inv, mem, m, D);
        smax = fmaxf(smax, w[m]);
    }
    float z = 0.f;
    for (int m = 0; m < M; ++m)
    {
        w[m] = expf(w[m] - smax);
        z += w[m];
    }
    float const iz = 1.f / z;
    for (int d = 0; d < D; ++d)
    {
        float acc = 0.f;
        for (int m = 0; m < M; ++m)
        {
            acc += w[m] * load(mem, static_cast<int64_t>(m) * D + d);
        }
        store(q, d, load(f, d) * inv);
        store(r, d, acc * iz);
    }
}

// ---- MemoryUpdate -------------------------------------------------------------------------

// Scores of one query row against every item (written to s[M]) and the index of the first maximum.
template <typename T>
VAD_HD int scores_argmax_row(T const* q, T const* mem, int M, int D, float* s)
{
    int best = 0;
    float bestv = neg_inf();
    for (int m = 0; m < M; ++m)
    {
        s[m] = similarity(q, 1.f, mem, m, D);
        if (s[m] > bestv)
        {
            bestv = s[m];
            best = m;
        }
    }
    return best;
}

// Partial max over k in {k0, k0+dk, ...} of s[k, m]  (s is this stream's [K*M] score matrix).
VAD_HD float col_max_partial(float const* s, int K, int M, int m, int k0, int dk)
{
    float v = neg_inf();
    for (int k = k0; k < K; k += dk)
    {
        v = fmaxf(v, s[static_cast<int64_t>(k) * M + m]);
    }
    return v;
}

// Partial sum over k of exp(s[k, m] - cmax): the softmax-over-K denominator of item m.
VAD_HD float col_sumexp_partial(float const* s, int K, int M, int m, float cmax, int k0, int dk)
{
    float v = 0.f;
    for (int k = k0; k < K; k += dk)
    {
        v += expf(s[static_cast<int64_t>(k) * M + m] - cmax);
    }
    return v;
}

// v[k, m] = softmax over K (given column max and 1/sum) masked by the argmax one-hot.
VAD_HD float masked_weight(float const* s, int32_t const* a, int M, int k, int m, float cmax, float inv_sum)
{
    return a[k] == m ? expf(s[static_cast<int64_t>(k) * M + m] - cmax) * inv_sum : 0.f;
}

// Partial max over k of v[k, m] (0 when no query chose item m).
VAD_HD float col_vmax_partial(
    float const* s, int32_t const* a, int K, int M, int m, float cmax, float inv_sum, int k0, int dk)
{
    float v = 0.f;
    for (int k = k0; k < K; k += dk)
    {
        v = fmaxf(v, masked_weight(s, a, M, k, m, cmax, inv_sum));
    }
    return v;
}

// 1 / max(vmax, eps): the per-item normalisation of the write weights.
VAD_HD float inv_clamped(float v) { return 1.f / fmaxf(v, kEps); }

// memory[m, d] + delta[m, d], with delta[m, d] = sum_k v[k, m] / max(vmax_m, eps) * q[k, d].
template <typename T>
VAD_HD float updated_elem(float const* s, int32_t const* a, T const* q, T const* mem, int K, int M, int D, int m,
    int d, float cmax, float inv_sum, float inv_vmax)
{
    float acc = 0.f;
    for (int k = 0; k < K; ++k)
    {
        float const v = masked_weight(s, a, M, k, m, cmax, inv_sum);
        if (v != 0.f)
        {
            acc += v * inv_vmax * load(q, static_cast<int64_t>(k) * D + d);
        }
    }
    return load(mem, static_cast<int64_t>(m) * D + d) + acc;
}

// Partial sum of squares of x[d] over d in {d0, d0+dd, ...}.
VAD_HD float sq_sum_partial(float const* x, int D, int d0, int dd)
{
    float v = 0.f;
    for (int d = d0; d < D; d += dd)
    {
        v += x[d] * x[d];
    }
    return v;
}

} // namespace vad
