// MPN prototype formation math, shared by the CUDA kernel and the host reference library.
//
// Same conventions as vad_memory_math.h (whose load/store/similarity/sq_sum_partial it reuses):
// `__host__ __device__` under nvcc, plain `inline` on the host, all arithmetic in float32, and
// reductions written as partial functions over a strided range (n0, n0 + dn, ...) - the host calls
// them with (0, 1), a CUDA block with (threadIdx.x, blockDim.x) plus a block reduction.
//
// Semantics (the `vadedge` ONNX domain, version 1):
//   PrototypeFormation(query[B,N,D], weight[M,D]) -> prototypes[B,M,D]
//     s[m, n] = query[n] . weight[m]                      (per stream; weight shared by all streams)
//     a[m, n] = softmax over the N positions of s[m, :]
//     p[m]    = sum_n a[m, n] query[n]
//     out[m]  = p[m] / max(||p[m]||_2, eps)
// Scores are kept item-major ([M, N] per stream) so that the softmax over N reads a contiguous row.
#pragma once

#include "vad_memory_math.h"

namespace vad
{

// Scores of query row n against every scoring vector: s[m * N + n] = query[n] . weight[m].
template <typename TQ, typename TW>
VAD_HD void prototype_scores_col(TQ const* query, TW const* weight, int N, int M, int D, int n, float* s)
{
    TQ const* q = query + static_cast<int64_t>(n) * D;
    for (int m = 0; m < M; ++m)
    {
        s[static_cast<int64_t>(m) * N + n] = similarity(q, 1.f, weight, m, D);
    }
}

// Partial max over n in {n0, n0+dn, ...} of one item's score row s[0..N).
VAD_HD float row_max_partial(float const* s, int N, int n0, int dn)
{
    float v = neg_inf();
    for (int n = n0; n < N; n += dn)
    {
        v = fmaxf(v, s[n]);
    }
    return v;
}

// Partial sum over n of exp(s[n] - smax): the softmax-over-N denominator of one item.
VAD_HD float row_sumexp_partial(float const* s, int N, float smax, int n0, int dn)
{
    float v = 0.f;
    for (int n = n0; n < N; n += dn)
    {
        v += expf(s[n] - smax);
    }
    return v;
}

// p[d] = sum_n softmax_n(s)[n] * query[n, d], given the row max and 1 / the softmax denominator.
template <typename T>
VAD_HD float pooled_elem(float const* s, T const* query, int N, int D, int d, float smax, float inv_sum)
{
    float acc = 0.f;
    for (int n = 0; n < N; ++n)
    {
        acc += expf(s[n] - smax) * load(query, static_cast<int64_t>(n) * D + d);
    }
    return acc * inv_sum;
}

} // namespace vad
