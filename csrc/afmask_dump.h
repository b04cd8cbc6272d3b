// afmask_dump.h: write one iteration of the original mask loop as an af::saveArray file that
// `afmask regress DUMP --arch A.arch --params P.af` replays and compares tensor by tensor.
//
// Header-only; needs ArrayFire (and flashlight only for fl::Variable::array()). Not built by
// afmask's setup.py: include it in your own C++ loop (see README.md, "Regression against your C++").
//
// Keys written (all f32, ArrayFire dims as in the loop):
//   fft 2K x T, m 2K x T (before the step), eps 2K x T, lambda 1, lr 1, variant 1 (0 letters, 1 pitfall),
//   input T x K, output 31 x T', pre_output P x T', dy T x K, mgrad 2K x T, m_next 2K x T, loss 1, f_loss 1.
// Any array argument may be an empty af::array() to leave that key out; the first five are required.
#pragma once

#include <arrayfire.h>

#include <stdexcept>
#include <string>

namespace afmask {

struct IterationDump {
  af::array fft;         // pre_sample[kFftIdx]
  af::array m;           // m BEFORE `m = m - mylr * mGrad` (keep a copy: `af::array mBefore = m;`)
  af::array eps;         // epsilon
  float lambda = 0.f;
  float lr = 0.f;
  int variant = 0;       // 0: letters (rows 2..27 softmax), 1: pitfall (31 rows, 5 zeroed)
  af::array input;       // finalInput (T x K), or trueInput.array()
  af::array output;      // output.array() (31 x T')
  af::array preOutput;   // the post-processed clean output (softmax_add_preOutput.array())
  af::array dy;          // trueInput.grad().array()
  af::array mGrad;       // the hand gradient including the regulariser
  af::array mNext;       // m after the step
  float loss = 0.f;      // totloss
  float fLoss = 0.f;     // myloss.scalar<float>()
  bool haveLoss = false; // set true when loss and fLoss are filled in
};

namespace detail {
inline void put(const std::string& path, const char* key, const af::array& a, bool& first) {
  if (a.isempty()) return;
  af::saveArray(key, a.as(f32), path.c_str(), !first);  // the first key creates the file, the rest append
  first = false;
}
inline void putScalar(const std::string& path, const char* key, float v, bool& first) {
  put(path, key, af::constant(v, 1, f32), first);
}
}  // namespace detail

// Write the dump to `path` (an existing file is replaced).
inline void saveIterationDump(const std::string& path, const IterationDump& d) {
  if (d.fft.isempty() || d.m.isempty() || d.eps.isempty()) {
    throw std::invalid_argument("afmask::saveIterationDump: fft, m and eps are required");
  }
  if (d.fft.dims() != d.m.dims() || d.fft.dims() != d.eps.dims()) {
    throw std::invalid_argument("afmask::saveIterationDump: fft, m and eps must have the same dims (2K x T)");
  }
  bool first = true;
  detail::put(path, "fft", d.fft, first);
  detail::put(path, "m", d.m, first);
  detail::put(path, "eps", d.eps, first);
  detail::putScalar(path, "lambda", d.lambda, first);
  detail::putScalar(path, "lr", d.lr, first);
  detail::putScalar(path, "variant", static_cast<float>(d.variant), first);
  detail::put(path, "input", d.input, first);
  detail::put(path, "output", d.output, first);
  detail::put(path, "pre_output", d.preOutput, first);
  detail::put(path, "dy", d.dy, first);
  detail::put(path, "mgrad", d.mGrad, first);
  detail::put(path, "m_next", d.mNext, first);
  if (d.haveLoss) {
    detail::putScalar(path, "loss", d.loss, first);
    detail::putScalar(path, "f_loss", d.fLoss, first);
  }
}

}  // namespace afmask
