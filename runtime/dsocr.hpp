// dsocr: a thin C++17 wrapper over the C API (installed as include/dsocr.hpp; header only).
//
//   dsocr::Options opt("models/DeepSeek-OCR");
//   opt.device = "cpu";
//   dsocr::Model model(opt);                        // throws dsocr::Error on failure
//   dsocr::Result r = model.run("page.png", {}, [](std::string_view piece) {
//     std::cout << piece << std::flush;
//     return true;                                   // false stops generation
//   });
//   std::cout << r.markdown() << "\n";
//
// Errors are exceptions: dsocr::Error carries the dsocr_status (code()) and the one-line message
// of dsocr_last_error() (what()). An exception thrown by the text callback stops generation and
// is rethrown from run(). Model and Result own their C handles (move-only, freed in the
// destructor); Result gives the plain dsocr_result through operator->.
#ifndef DSOCR_HPP_
#define DSOCR_HPP_

#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "dsocr.h"

namespace dsocr {

class Error : public std::runtime_error {
 public:
  Error(dsocr_status code, const std::string& message) : std::runtime_error(message), code_(code) {}
  dsocr_status code() const noexcept { return code_; }

 private:
  dsocr_status code_;
};

// dsocr_options with the defaults filled in.
struct Options : dsocr_options {
  Options() { dsocr_options_default(this); }
  explicit Options(const char* model) : Options() { model_dir = model; }
};

// dsocr_run_params with the defaults filled in.
struct RunParams : dsocr_run_params {
  RunParams() { dsocr_run_params_default(this); }
};

// Owns a C handle: move-only, freed with Free (which accepts NULL) in the destructor.
template <class T, void (*Free)(T*)>
class Handle {
 public:
  explicit Handle(T* p = nullptr) noexcept : p_(p) {}
  Handle(Handle&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      Free(p_);
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { Free(p_); }
  T* get() const noexcept { return p_; }

 private:
  T* p_;
};

class Result {
 public:
  explicit Result(dsocr_result* r = nullptr) noexcept : r_(r) {}

  const dsocr_result* operator->() const noexcept { return r_.get(); }
  const dsocr_result* get() const noexcept { return r_.get(); }
  std::string_view text() const { return r_.get()->text; }
  std::string_view markdown() const { return r_.get()->markdown; }
  std::string_view plain() const { return r_.get()->plain; }
  const dsocr_block* begin() const noexcept { return r_.get()->blocks; }  // grounding blocks
  const dsocr_block* end() const noexcept { return begin() + r_.get()->n_blocks; }

 private:
  Handle<dsocr_result, dsocr_result_free> r_;
};

class Model {
 public:
  // Piece of generated text (whole UTF-8 characters) -> true to go on, false to stop.
  using OnText = std::function<bool(std::string_view)>;

  explicit Model(const dsocr_options& options) {
    dsocr_engine* e = nullptr;
    check(dsocr_open(&options, &e));
    e_ = Handle<dsocr_engine, dsocr_close>(e);
  }

  // OCR an image file. An empty prompt means the task of `params` (markdown by default).
  Result run(const std::string& image_path, const RunParams& params = {},
             const OnText& on_text = {}, const std::string& prompt = {}) {
    Callback cb{on_text, nullptr};
    dsocr_result* r = nullptr;
    const dsocr_status s =
        dsocr_run(e_.get(), image_path.c_str(), prompt.empty() ? nullptr : prompt.c_str(), &params,
                  on_text ? &Callback::call : nullptr, &cb, &r);
    return finish(s, r, cb);
  }

  // OCR RGB8 pixels: h rows of w pixels, `stride` bytes apart (0: 3 * w).
  Result run_rgb(const uint8_t* rgb, int w, int h, size_t stride = 0, const RunParams& params = {},
                 const OnText& on_text = {}, const std::string& prompt = {}) {
    Callback cb{on_text, nullptr};
    dsocr_result* r = nullptr;
    const dsocr_status s =
        dsocr_run_rgb(e_.get(), rgb, w, h, stride ? stride : static_cast<size_t>(w) * 3,
                      prompt.empty() ? nullptr : prompt.c_str(), &params,
                      on_text ? &Callback::call : nullptr, &cb, &r);
    return finish(s, r, cb);
  }

  dsocr_engine* handle() const noexcept { return e_.get(); }

 private:
  struct Callback {
    const OnText& fn;
    std::exception_ptr error;
    static int call(const char* piece, size_t len, void* user) noexcept {
      auto* self = static_cast<Callback*>(user);
      try {
        return self->fn(std::string_view(piece, len)) ? 0 : 1;
      } catch (...) {
        self->error = std::current_exception();
        return 1;
      }
    }
  };

  static void check(dsocr_status s) {
    if (s != DSOCR_OK) throw Error(s, dsocr_last_error());
  }
  static Result finish(dsocr_status s, dsocr_result* r, const Callback& cb) {
    Result result(r);
    if (cb.error) std::rethrow_exception(cb.error);
    check(s);
    return result;
  }

  Handle<dsocr_engine, dsocr_close> e_;
};

}  // namespace dsocr

#endif  // DSOCR_HPP_
