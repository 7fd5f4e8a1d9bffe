// The one error type that crosses every boundary of dsocr.
//
// A Status is either OK or carries a one-line message that names the file, tensor or limit at
// fault and says what to do about it, e.g.
//   "model-00001-of-000001.safetensors: model.layers.3.self_attn.q_proj.weight: shape [1280,640],
//    expected [1280,1280]; the checkpoint is not DeepSeek-OCR v1"
// Library code returns Status / Expected<T>; only tools/ turns it into stderr + an exit code.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <variant>

namespace dsocr {

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message), true); }

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const std::string& message() const { return message_; }

  // Prefix the message with context ("file.safetensors: " + message).
  Status& prefix(const std::string& context) {
    if (failed_) message_ = context + ": " + message_;
    return *this;
  }

 private:
  Status(std::string m, bool failed) : message_(std::move(m)), failed_(failed) {}
  std::string message_;
  bool failed_ = false;
};

// Value or error. Minimal stand-in for C++23 std::expected.
template <class T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}  // NOLINT(implicit)
  Expected(Status error) : v_(std::move(error)) {  // NOLINT(implicit)
    if (std::get<Status>(v_).ok()) v_ = Status::Error("internal error: Expected built from OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  const std::string& message() const { return status().message(); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

// printf-style message builder for Status::Error.
template <class... Args>
std::string strfmt(const char* fmt, Args... args) {
  int n = std::snprintf(nullptr, 0, fmt, args...);
  std::string s(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::snprintf(s.data(), s.size() + 1, fmt, args...);
  return s;
}

}  // namespace dsocr

#define DSOCR_CONCAT_INNER(a, b) a##b
#define DSOCR_CONCAT(a, b) DSOCR_CONCAT_INNER(a, b)

// Return the Status if it is an error.
#define DSOCR_TRY(expr)                           \
  do {                                            \
    ::dsocr::Status dsocr_try_status_ = (expr);   \
    if (!dsocr_try_status_.ok()) return dsocr_try_status_; \
  } while (0)

// `DSOCR_ASSIGN_OR_RETURN(auto x, f());` — unwrap an Expected or return its error.
#define DSOCR_ASSIGN_OR_RETURN(lhs, expr) \
  DSOCR_ASSIGN_OR_RETURN_IMPL(DSOCR_CONCAT(dsocr_expected_, __LINE__), lhs, expr)
#define DSOCR_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
