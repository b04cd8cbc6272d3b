// afmask._ext's time convolution (conv_time.cpp), registered by the module in mask_step.cpp.
#pragma once

#include <pybind11/pybind11.h>

void register_conv_time(pybind11::module_ &mod);
