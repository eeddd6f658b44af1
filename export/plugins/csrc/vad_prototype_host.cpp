// Host (CPU) build of the prototype formation math in vad_prototype_math.h, exported with C linkage
// for ctypes (export/plugins/host.py) so tests compare it with NumPy, ONNX Runtime (the
// vadedge::PrototypeFormation function body) and train/models/mpn_dpu.py without a GPU.
#include "vad_prototype_math.h"

#include <cstdint>
#include <vector>

extern "C"
{

// query: float32 [B,N,D]; weight: float32 [M,D] (shared by the streams); out: float32 [B,M,D].
// Returns 0 on success, 1 on invalid sizes.
int vad_host_prototype_formation(float const* query, float const* weight, int B, int N, int M, int D, float* out)
{
    if (B < 0 || N <= 0 || M <= 0 || D <= 0)
    {
        return 1;
    }
    std::vector<float> s(static_cast<size_t>(M) * N);
    std::vector<float> row(static_cast<size_t>(D));
    for (int b = 0; b < B; ++b)
    {
        float const* q = query + static_cast<int64_t>(b) * N * D;
        float* o = out + static_cast<int64_t>(b) * M * D;
        for (int n = 0; n < N; ++n)
        {
            vad::prototype_scores_col(q, weight, N, M, D, n, s.data());
        }
        for (int m = 0; m < M; ++m)
        {
            float const* sm = s.data() + static_cast<int64_t>(m) * N;
            float const smax = vad::row_max_partial(sm, N, 0, 1);
            float const inv_sum = 1.f / vad::row_sumexp_partial(sm, N, smax, 0, 1);
            for (int d = 0; d < D; ++d)
            {
                row[d] = vad::pooled_elem(sm, q, N, D, d, smax, inv_sum);
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
