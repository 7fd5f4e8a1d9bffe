// The PDL switch of kernels/launch.cuh.
#include <cstdlib>
#include <cstring>

namespace dsocr::cuda {

bool pdl_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("DSOCR_PDL");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

}  // namespace dsocr::cuda
