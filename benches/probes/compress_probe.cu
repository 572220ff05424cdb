// Probe (not part of the build): does a generic-compressible allocation (cuMemCreate with
// CU_MEM_ALLOCATION_COMP_GENERIC) make zero fills, reads of zeros and atomic adds cheaper than
// ordinary device memory? It times, on 67 and 134 MiB buffers of each kind (about the size of the
// backward's f32 dq accumulator at D 64 and D 128, B 4 H 16 S 4096): a zero-fill kernel,
// cudaMemsetAsync, a read of the zeroed buffer, the backward pre-pass pattern (read half the bytes
// and zero-fill the buffer), f32 atomic adds into it, a fill with data and a read of that data.
// Built and run on the GPU machine (it has nvcc and the driver; this one has no libcuda to link):
//   nvcc -O3 -std=c++17 -arch=sm_90 benches/probes/compress_probe.cu -o /tmp/cp -lcuda && /tmp/cp
// Results (H100): benches/runs/2026-11-23-s11-table-remeasured/README.md, "11.2".
#include <cuda.h>
#include <cuda_runtime.h>
#include <cstdio>
#include <vector>
#include <algorithm>
#define CK(x) do { CUresult r = (x); if (r != CUDA_SUCCESS) { const char* s; cuGetErrorString(r, &s); printf("%s failed: %s\n", #x, s); return 1; } } while (0)

__global__ void zero_fill(float4* p, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) p[i] = make_float4(0, 0, 0, 0);
}
__global__ void fill_val(float4* p, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) p[i] = make_float4(i * 1e-3f, 1.f + i, 2.f, 3.f * i);
}
__global__ void read_sum(const float4* p, size_t n, float* out) {
  float s = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) { float4 v = p[i]; s += v.x + v.y + v.z + v.w; }
  if (s == 12345.f) *out = s;
}
// pre-pass-like: read a (bf16 data as uint4) n16 uint4s and zero-fill acc of n4 float4s
__global__ void read_and_zero(const uint4* a, size_t n16, float4* acc, size_t n4, float* out) {
  unsigned s = 0;
  size_t st = (size_t)gridDim.x * blockDim.x, i0 = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  for (size_t i = i0; i < n16; i += st) { uint4 v = a[i]; s ^= v.x ^ v.y ^ v.z ^ v.w; }
  for (size_t i = i0; i < n4; i += st) acc[i] = make_float4(0, 0, 0, 0);
  if (s == 12345u) *out = (float)s;
}
__global__ void add_val(float* p, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) atomicAdd(p + i, 1.0f);
}

template <typename F> float timeit(F f) {
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  std::vector<float> v;
  for (int w = 0; w < 3; ++w) f();
  for (int r = 0; r < 15; ++r) { cudaEventRecord(a); f(); cudaEventRecord(b); cudaEventSynchronize(b); float ms; cudaEventElapsedTime(&ms, a, b); v.push_back(ms * 1000.f); }
  cudaEventDestroy(a); cudaEventDestroy(b);
  std::sort(v.begin(), v.end()); return v[v.size() / 2];
}

int main() {
  cudaFree(0);
  CUdevice dev; CK(cuCtxGetDevice(&dev));
  int sup = 0; CK(cuDeviceGetAttribute(&sup, CU_DEVICE_ATTRIBUTE_GENERIC_COMPRESSION_SUPPORTED, dev));
  printf("generic compression supported: %d\n", sup);
  for (size_t mb : {67, 134}) {
    size_t bytes = mb << 20;
    CUmemAllocationProp prop = {};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED; prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE; prop.location.id = dev;
    prop.allocFlags.compressionType = CU_MEM_ALLOCATION_COMP_GENERIC;
    size_t gran; CK(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
    size_t sz = (bytes + gran - 1) / gran * gran;
    CUmemGenericAllocationHandle h; CK(cuMemCreate(&h, sz, &prop, 0));
    CUmemAllocationProp got = {}; CK(cuMemGetAllocationPropertiesFromHandle(&got, h));
    CUdeviceptr cp; CK(cuMemAddressReserve(&cp, sz, 0, 0, 0)); CK(cuMemMap(cp, sz, 0, h, 0));
    CUmemAccessDesc acc = {}; acc.location = prop.location; acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE; CK(cuMemSetAccess(cp, sz, &acc, 1));
    float* comp = (float*)cp; float* norm; cudaMalloc(&norm, sz); uint4* src; cudaMalloc(&src, sz / 2); float* sink; cudaMalloc(&sink, 4);
    cudaMemset(src, 1, sz / 2);
    size_t n4 = sz / 16; int grid = 132 * 8, blk = 256;
    printf("== %zu MiB (granularity %zu, compression granted: %d)\n", mb, gran, (int)got.allocFlags.compressionType);
    for (int pass = 0; pass < 2; ++pass) for (int c = 0; c < 2; ++c) {
      float* p = c ? comp : norm; const char* nm = c ? "compressible" : "normal";
      float t_zero = timeit([&] { zero_fill<<<grid, blk>>>((float4*)p, n4); });
      float t_memset = timeit([&] { cudaMemsetAsync(p, 0, sz); });
      cudaMemset(p, 0, sz);
      float t_read0 = timeit([&] { read_sum<<<grid, blk>>>((const float4*)p, n4, sink); });
      float t_rz = timeit([&] { read_and_zero<<<grid, blk>>>(src, sz / 32, (float4*)p, n4, sink); });
      float t_add = timeit([&] { add_val<<<grid, blk>>>(p, sz / 4); });
      float t_fill = timeit([&] { fill_val<<<grid, blk>>>((float4*)p, n4); });
      float t_read1 = timeit([&] { read_sum<<<grid, blk>>>((const float4*)p, n4, sink); });
      printf("%-13s zero-fill %7.1f us (%5.2f TB/s)  memset %7.1f  read-zeros %7.1f (%5.2f TB/s)  read-half+zero %7.1f (%5.2f TB/s)  atomic-add %7.1f  fill-data %7.1f  read-data %7.1f (%5.2f TB/s)\n",
        nm, t_zero, sz / t_zero / 1e6, t_memset, t_read0, sz / t_read0 / 1e6, t_rz, 1.5 * sz / t_rz / 1e6, t_add, t_fill, t_read1, sz / t_read1 / 1e6);
    }
    cudaDeviceSynchronize();
    cuMemUnmap(cp, sz); cuMemRelease(h); cuMemAddressFree(cp, sz); cudaFree(norm); cudaFree(src); cudaFree(sink);
  }
  return 0;
}
