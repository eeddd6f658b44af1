// Host (CPU) build of the plugin math in vad_memory_math.h, exported with C linkage so tests can
// call it through ctypes and compare with NumPy, ONNX Runtime (the vadedge function bodies) and
// train/memory.py. Built with any C++17 compiler (g++ here); no CUDA or TensorRT needed.
#include "vad_memory_math.h"

#include <cstdint>
#include <vector>

extern "C"
{

// features, memory: float32 [B,K,D] and [B,M,D]; query, read: float32 [B,K,D]. Returns 0 on success.
int vad_host_memory_read(float const* features, float const* memory, int B, int K, int M, int D, float* query,
    float* read)
{
    if (B < 0 || K < 0 || M <= 0 || D <= 0)
    {
        return 1;
    }
    std::vector<float> w(static_cast<size_t>(M));
    for (int b = 0; b < B; ++b)
    {
        float const* mem = memory + static_cast<int64_t>(b) * M * D;
        for (int k = 0; k < K; ++k)
        {
            int64_t const row = (static_cast<int64_t>(b) * K + k) * D;
            vad::memory_read_row(features + row, mem, M, D, w.data(), query + row, read + row);
        }
    }
    return 0;
}

// query, memory: float32 [B,K,D] and [B,M,D]; gate: one byte per stream (0 = keep); out: [B,M,D].
int vad_host_memory_update(float const* query, float const* memory, uint8_t const* gate, int B, int K, int M, int D,
    float* out)
{
    if (B < 0 || K <= 0 || M <= 0 || D <= 0)
    {
        return 1;
    }
    std::vector<float> s(static_cast<size_t>(K) * M);
    std::vector<int32_t> a(static_cast<size_t>(K));
    std::vector<float> row(static_cast<size_t>(D));
    for (int b = 0; b < B; ++b)
    {
        float const* q = query + static_cast<int64_t>(b) * K * D;
        float const* mem = memory + static_cast<int64_t>(b) * M * D;
        float* o = out + static_cast<int64_t>(b) * M * D;
        if (!gate[b])
        {
            for (int64_t i = 0; i < static_cast<int64_t>(M) * D; ++i)
            {
                o[i] = mem[i];
            }
            continue;
        }
        for (int k = 0; k < K; ++k)
        {
            a[k] = vad::scores_argmax_row(q + static_cast<int64_t>(k) * D, mem, M, D, s.data() + static_cast<int64_t>(k) * M);
        }
        for (int m = 0; m < M; ++m)
        {
            float const cmax = vad::col_max_partial(s.data(), K, M, m, 0, 1);
            float const inv_sum = 1.f / vad::col_sumexp_partial(s.data(), K, M, m, cmax, 0, 1);
            float const inv_vmax = vad::inv_clamped(vad::col_vmax_partial(s.data(), a.data(), K, M, m, cmax, inv_sum, 0, 1));
            for (int d = 0; d < D; ++d)
            {
                row[d] = vad::updated_elem(s.data(), a.data(), q, mem, K, M, D, m, d, cmax, inv_sum, inv_vmax);
            }
            float const inv = 1.f / fmaxf(sqrtf(vad::sq_sum_partial(row.data(), D, 0, 1)), vad::kEps);
            for (int d = 0; d < D; ++d)
            {
                o[static_cast<int64_t>(m) * D + d] = row[d] * inv;
            }
        }
    }
    return 0;
}

} // extern "C"
