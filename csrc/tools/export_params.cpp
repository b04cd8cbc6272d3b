/*
 * export_params: write the parameters of a trained wav2letter acoustic model
 * as an ArrayFire saveArray file that afmask reads (afmask.model.load_model).
 *
 *   export_params AM.bin OUT.af
 *
 * Loads the model with W2lSerializer::load (as wav2letter's Test.cpp does),
 * puts it in evaluation mode and saves every array of network->params(), in
 * order, under the keys param_000, param_001, ... with af::saveArray. The
 * order is flashlight's: per layer of the .arch file, Conv2D weight
 * [kw, kh, cin, cout] then bias [1, 1, cout, 1]; Linear weight [out, in] then
 * bias [out]; WeightNorm v, g, then the wrapped layer's bias; LayerNorm
 * weight, bias. The file is written beside OUT.af and renamed into place
 * when complete, so a failure never leaves a partial file.
 *
 * Built against wav2letter v0.2 (flashlight v0.2); see README.md here.
 */

#include <cstdio>
#include <exception>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <arrayfire.h>
#include <flashlight/flashlight.h>

#include "common/Defines.h"
#include "criterion/criterion.h"
#include "module/module.h"
#include "runtime/Serial.h"

namespace {

std::string dimsString(const af::dim4& d) {
  std::ostringstream ss;
  ss << d[0] << " x " << d[1] << " x " << d[2] << " x " << d[3];
  return ss.str();
}

// Prints the --arch / --archdir / --tokens flags stored with the model, so the
// user knows which .arch file to give afmask.
void printArchFlags(const std::unordered_map<std::string, std::string>& cfg) {
  auto flags = cfg.find(w2l::kGflags);
  if (flags == cfg.end()) {
    return;
  }
  std::istringstream lines(flags->second);
  std::string line;
  while (std::getline(lines, line)) {
    for (const char* name : {"--arch=", "--archdir=", "--tokens=", "--tokensdir="}) {
      if (line.compare(0, std::string(name).size(), name) == 0) {
        std::cerr << "model flag: " << line << "\n";
      }
    }
  }
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " AM.bin OUT.af\n"
              << "  writes network->params() of a wav2letter model, in order, as param_000, param_001, ...\n";
    return 2;
  }
  const std::string amPath = argv[1];
  const std::string outPath = argv[2];
  const std::string tmpPath = outPath + ".tmp";

  std::shared_ptr<fl::Module> network;
  std::shared_ptr<w2l::SequenceCriterion> criterion;
  std::unordered_map<std::string, std::string> cfg;
  try {
    w2l::W2lSerializer::load(amPath, cfg, network, criterion);
  } catch (const std::exception& ex) {
    std::cerr << amPath << ": cannot load the model: " << ex.what() << "\n";
    return 1;
  }
  if (!network) {
    std::cerr << amPath << ": the file holds no network\n";
    return 1;
  }
  network->eval();
  std::cerr << network->prettyString() << "\n";
  printArchFlags(cfg);

  const std::vector<fl::Variable> params = network->params();
  if (params.empty()) {
    std::cerr << amPath << ": the network has no parameters; nothing to write\n";
    return 1;
  }
  std::remove(tmpPath.c_str()); // saveArray appends to an existing file otherwise
  try {
    size_t total = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      af::array a = params[i].array();
      if (a.type() != f32) {
        a = a.as(f32); // afmask expects float32 weights
      }
      std::ostringstream key;
      key << "param_" << std::setw(3) << std::setfill('0') << i;
      af::saveArray(key.str().c_str(), a, tmpPath.c_str(), /* append = */ i > 0);
      total += a.elements();
      std::cerr << key.str() << ": " << dimsString(a.dims()) << "\n";
    }
    if (std::rename(tmpPath.c_str(), outPath.c_str()) != 0) {
      std::perror(("cannot rename " + tmpPath + " to " + outPath).c_str());
      std::remove(tmpPath.c_str());
      return 1;
    }
    std::cerr << "wrote " << outPath << ": " << params.size() << " arrays, " << total << " parameters\n";
  } catch (const std::exception& ex) {
    std::cerr << outPath << ": cannot write: " << ex.what() << "\n";
    std::remove(tmpPath.c_str());
    return 1;
  }
  return 0;
}
