// dump_example.cpp: one iteration of the note's mask loop ("letters" version) written with
// afmask_dump.h, using real ArrayFire calls, so that `afmask regress` can be checked end to end
// without flashlight. The network is the linear model of shared/fixtures/cpp_dump (linear.arch:
// `V -1 1 NFEAT 0`, `RO 2 0 3 1`, `L NFEAT NLABEL`), whose forward pass is one af::matmul; its
// weights are random and written next to the dump.
//
//   dump_example OUT_DIR [T=60] [seed=1]
//
// writes OUT_DIR/dump.af (keys fft, m, eps, lambda, lr, variant, input, output, pre_output, f_loss,
// loss), OUT_DIR/params.af (param_000 = weight 31 x 257, param_001 = bias 31) and
// OUT_DIR/linear.arch; then
//
//   afmask regress OUT_DIR/dump.af --arch OUT_DIR/linear.arch --params OUT_DIR/params.af
//
// replays it. The gradient keys (dy, mgrad, m_next) are left out: they need flashlight's autograd,
// which this program does not use (empty arrays, which the header skips).
//
// Build (ArrayFire's unified library; or -lafcpu, -lafcuda, -lafopencl):
//   g++ -std=c++14 -O2 -I csrc csrc/tools/dump_example.cpp -I$AF_PATH/include -L$AF_PATH/lib -laf -o dump_example
// Exit status: 0 written, 1 an ArrayFire or file error, 2 wrong arguments.

#include <arrayfire.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>

#include "afmask_dump.h"

namespace {

const int kBins = 257;    // K: bins of the 512-point FFT (NFEAT)
const int kTokens = 31;   // NLABEL

// |x| of each bin, the note's per-bin loop: rows 2k and 2k+1 are Re and Im of bin k. K x T.
af::array magnitudes(const af::array& interleaved) {
  const int K = static_cast<int>(interleaved.dims(0) / 2);
  af::array out = af::constant(0, K, interleaved.dims(1), f32);
  for (int j = 0; j < 2 * K; j += 2) {  // int indices: af::index(int), no other conversion
    af::array fir = interleaved(j, af::span);
    af::array sec = interleaved(j + 1, af::span);
    out(j / 2, af::span) = af::sqrt(fir * fir + sec * sec);
  }
  return out;
}

float populationStdev(const af::array& a) {
#if AF_API_VERSION >= 38
  return af::stdev<float>(a, AF_VARIANCE_POPULATION);
#else
  return af::stdev<float>(a);
#endif
}

// The network input: magnitudes transposed to T x K and normalised by their global mean and stdev.
af::array networkInput(const af::array& mag) {
  af::array trInput = af::transpose(mag);
  const float mean = af::mean<float>(trInput);
  const float stdev = populationStdev(trInput);
  return (trInput - mean) / stdev;
}

// linear.arch on a T x K input: View (T, 1, K, 1), reorder (2, 0, 3, 1) -> K x T, then W * x + b.
af::array linearNetwork(const af::array& input, const af::array& weight, const af::array& bias) {
  af::array viewed = af::moddims(input, input.dims(0), 1, input.dims(1), 1);
  af::array x = af::reorder(viewed, 2, 0, 3, 1);
  return af::matmul(weight, x) + af::tile(bias, 1, static_cast<unsigned>(x.dims(1)));
}

// The note's "letters" post-processing: each token row divided by its stdev over time (fl::var
// divides by N-1), rows 2..27, softmax over the 26 letters per frame. 26 x T'.
af::array letters(const af::array& output) {
  const unsigned T = static_cast<unsigned>(output.dims(1));
  af::array centred = output - af::tile(af::mean(output, 1), 1, T);
  af::array var = af::sum(centred * centred, 1) / static_cast<float>(T - 1);
  af::array scaled = output / af::tile(af::sqrt(var), 1, T);
  af::array tmp = scaled(af::seq(2, 27), af::span);
  af::array e = af::exp(tmp - af::tile(af::max(tmp, 0), static_cast<unsigned>(tmp.dims(0))));
  return e / af::tile(af::sum(e, 0), static_cast<unsigned>(tmp.dims(0)));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 4) {
    std::fprintf(stderr, "usage: %s OUT_DIR [T=60] [seed=1]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int T = argc > 2 ? std::atoi(argv[2]) : 60;
  const unsigned long long seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1ULL;
  if (T < 2) {
    std::fprintf(stderr, "T must be >= 2, got %s\n", argv[2]);
    return 2;
  }
  try {
    af::setSeed(seed);
    // a clean "FFT" with speech-like scale, the initial m and the noise, as in the loop
    af::array fft = af::randn(2 * kBins, T) * 100.0f;
    af::array m = af::constant(0.1f, 2 * kBins, T);
    const float fftstdev = populationStdev(fft);
    af::array eps = af::randn(2 * kBins, T) * fftstdev;  // fl::normal(noiseDims, fftstdev, 0)
    af::array weight = af::randn(kTokens, kBins) * 0.05f;
    af::array bias = af::randn(kTokens) * 0.1f;
    const float lambda = 10.0f, lr = 0.001f;

    // the clean output, post-processed (the loop's softmax_add_preOutput)
    af::array preOutput = letters(linearNetwork(networkInput(magnitudes(fft)), weight, bias));

    // one iteration: perturb, magnitudes, normalise, network, post-process, distance
    af::array rawinput = fft + m * eps;
    af::array finalInput = networkInput(magnitudes(rawinput));
    af::array output = linearNetwork(finalInput, weight, bias);
    af::array diff = preOutput - letters(output);
    const float fLoss = af::sum<float>(diff * diff);  // ||pre - cur||_F^2
    const double mL2 = af::norm(m);                    // auto m_L2 = af::norm(m); //double
    const float totloss = fLoss - lambda * static_cast<float>(std::log(mL2 * mL2));

    afmask::IterationDump d;
    d.fft = fft;
    d.m = m;
    d.eps = eps;
    d.lambda = lambda;
    d.lr = lr;
    d.variant = 0;
    d.input = finalInput;
    d.output = output;
    d.preOutput = preOutput;
    d.loss = totloss;
    d.fLoss = fLoss;
    d.haveLoss = true;
    afmask::saveIterationDump(dir + "/dump.af", d);

    const std::string params = dir + "/params.af";
    af::saveArray("param_000", weight, params.c_str(), false);
    af::saveArray("param_001", bias, params.c_str(), true);
    std::ofstream arch(dir + "/linear.arch");
    arch << "V -1 1 NFEAT 0\nRO 2 0 3 1\nL NFEAT NLABEL\n";
    if (!arch) {
      std::fprintf(stderr, "cannot write %s/linear.arch\n", dir.c_str());
      return 1;
    }
    std::fprintf(stderr, "wrote %s/dump.af (K = %d, T = %d, f_loss %g, loss %g), params.af, linear.arch\n",
                 dir.c_str(), kBins, T, fLoss, totloss);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dump_example: %s\n", e.what());
    return 1;
  }
  return 0;
}
