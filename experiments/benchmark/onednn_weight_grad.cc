// A 2-D convolution's weight gradient computed by oneDNN (the library PyTorch's CPU convolutions use), as an
// XLA FFI handler for the CPU: NHWC input and NHWC output gradient in, HWIO float32 weight gradient out.
// Built and measured by onednn_weight_grad.py (see there); an experiment, not part of the package.
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

// oneDNN's primitive for one problem shape, created on first use (creation JIT-compiles its kernel).
struct Plan {
  dnnl::convolution_backward_weights::primitive_desc desc;
  dnnl::convolution_backward_weights primitive;
  memory::desc hwio;
  dnnl::reorder to_hwio;  // empty when oneDNN writes HWIO itself
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// n, h, w, cin, out_h, out_w, cout, kh, kw, stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right
using Shape = std::vector<int64_t>;

Plan& PlanFor(const Shape& s) {
  static std::map<Shape, Plan> plans;
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = plans.find(s);
  if (found != plans.end()) return found->second;
  using tag = memory::format_tag;
  const auto f32 = memory::data_type::f32;
  memory::desc src({s[0], s[3], s[1], s[2]}, f32, tag::nhwc), dst({s[0], s[6], s[4], s[5]}, f32, tag::nhwc);
  memory::desc any_weights({s[6], s[3], s[7], s[8]}, f32, tag::any), hwio({s[6], s[3], s[7], s[8]}, f32, tag::hwio);
  memory::dims strides = {s[9], s[10]}, pad_before = {s[11], s[13]}, pad_after = {s[12], s[14]};
  const auto direct = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc forward(
      {dnnl::prop_kind::forward_training, direct, src, any_weights, dst, strides, pad_before, pad_after}, Engine());
  dnnl::convolution_backward_weights::primitive_desc desc(
      {direct, src, any_weights, dst, strides, pad_before, pad_after}, Engine(), forward);
  dnnl::reorder to_hwio;
  if (desc.diff_weights_desc() != hwio) to_hwio = dnnl::reorder({Engine(), desc.diff_weights_desc(), Engine(), hwio});
  return plans.emplace(s, Plan{desc, dnnl::convolution_backward_weights(desc), hwio, to_hwio}).first->second;
}

ffi::Error WeightGrad(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> grad, ffi::ResultBuffer<ffi::F32> weight_grad,
                      int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_bottom, int64_t pad_left,
                      int64_t pad_right) {
  auto xs = x.dimensions(), gs = grad.dimensions(), ws = weight_grad->dimensions();
  Plan& plan = PlanFor({xs[0], xs[1], xs[2], xs[3], gs[1], gs[2], gs[3], ws[0], ws[1], stride_h, stride_w, pad_top,
                        pad_bottom, pad_left, pad_right});
  dnnl::stream stream(Engine());
  memory src(plan.desc.src_desc(), Engine(), x.typed_data());
  memory dst(plan.desc.diff_dst_desc(), Engine(), grad.typed_data());
  memory out(plan.hwio, Engine(), weight_grad->typed_data());
  memory blocked = plan.to_hwio ? memory(plan.desc.diff_weights_desc(), Engine()) : out;
  plan.primitive.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, dst}, {DNNL_ARG_DIFF_WEIGHTS, blocked}});
  if (plan.to_hwio) plan.to_hwio.execute(stream, blocked, out);
  stream.wait();
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnConvWeightGrad, WeightGrad,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride_h")
                                  .Attr<int64_t>("stride_w")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_bottom")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("pad_right"));
