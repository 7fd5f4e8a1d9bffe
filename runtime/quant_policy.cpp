#include "runtime/quant_policy.h"

#include <vector>

namespace dsocr {
namespace {

// The classes each override sets (the table in quant_policy.h).
std::vector<TensorClass> override_classes(QuantOverride which) {
  switch (which) {
    case QuantOverride::kExperts:
      return {TensorClass::kRoutedExpert};
    case QuantOverride::kDense:
      return {TensorClass::kDenseMlp, TensorClass::kSharedExpert};
    case QuantOverride::kAttn:
      return {TensorClass::kAttn};
    case QuantOverride::kVision:
      return {TensorClass::kSam, TensorClass::kClip, TensorClass::kProjector};
    case QuantOverride::kLmHead:
      return {TensorClass::kLmHead};
  }
  return {};
}

std::string quoted(std::string_view s) {
  return "'" + std::string(s) + "'";
}

}  // namespace

bool QuantPolicy::all_bf16() const {
  for (WeightFormat f : format)
    if (f != WeightFormat::kBf16) return false;
  return true;
}

std::string QuantPolicy::describe() const {
  std::string s;
  for (WeightFormat f : {WeightFormat::kInt4, WeightFormat::kInt8}) {
    std::string classes;
    for (int c = 0; c < kTensorClassCount; ++c)
      if (format[c] == f)
        classes += (classes.empty() ? "" : ", ") +
                   std::string(tensor_class_name(static_cast<TensorClass>(c)));
    if (classes.empty()) continue;
    s += (s.empty() ? "" : "; ") + classes + " " + weight_format_name(f);
    if (f == WeightFormat::kInt4) s += strfmt(" (group %d)", group);
  }
  return s.empty() ? "all bf16" : s + "; the rest bf16";
}

Expected<QuantPolicy> parse_quant_policy(std::string_view name) {
  QuantPolicy p;
  p.name = std::string(name);
  auto set = [&](std::initializer_list<TensorClass> classes, WeightFormat f) {
    for (TensorClass c : classes) p.format[static_cast<int>(c)] = f;
  };
  constexpr auto kAttn = TensorClass::kAttn, kDense = TensorClass::kDenseMlp,
                 kShared = TensorClass::kSharedExpert, kRouted = TensorClass::kRoutedExpert;
  if (name == "bf16") {
  } else if (name == "int8") {
    set({kAttn, kDense, kShared, kRouted}, WeightFormat::kInt8);
  } else if (name == "int4") {
    set({kAttn, kDense, kShared, kRouted}, WeightFormat::kInt4);
  } else if (name == "mixed") {
    set({kAttn, kDense, kShared}, WeightFormat::kInt8);
    set({kRouted}, WeightFormat::kInt4);
  } else {
    return Status::Error("quantization policy " + quoted(name) +
                         " unknown; use bf16, int8, int4 or mixed");
  }
  return p;
}

Expected<WeightFormat> parse_weight_format(std::string_view text) {
  for (WeightFormat f : {WeightFormat::kBf16, WeightFormat::kInt8, WeightFormat::kInt4})
    if (text == weight_format_name(f)) return f;
  return Status::Error("weight format " + quoted(text) + " unknown; use bf16, int8 or int4");
}

void apply_quant_override(QuantPolicy& policy, QuantOverride which, WeightFormat f) {
  for (TensorClass c : override_classes(which)) policy.format[static_cast<int>(c)] = f;
}

Status set_quant_group(QuantPolicy& policy, int group) {
  if (group != kInt4GroupDefault && group != kInt4GroupSmall)
    return Status::Error(strfmt("int4 group %d unsupported; use %d or %d", group, kInt4GroupDefault,
                                kInt4GroupSmall));
  policy.group = group;
  return Status::Ok();
}

const std::vector<QuantFlags::Flag>& QuantFlags::all() {
  static const std::vector<Flag> kFlags = {
      {"--quant", "P",
       "weight formats per tensor class: bf16 (default), int8, int4, or mixed (INT4 routed "
       "experts, INT8 attention, dense MLP, shared experts)"},
      {"--quant-experts", "F", "routed experts as bf16|int8|int4 (overrides --quant)"},
      {"--quant-dense", "F", "dense MLP (layer 0) and shared experts: bf16|int8|int4"},
      {"--quant-attn", "F", "attention q, k, v, o: bf16|int8|int4"},
      {"--quant-vision", "F", "SAM, CLIP and projector linear layers: bf16|int8|int4"},
      {"--quant-lm-head", "F", "lm_head: bf16|int8|int4"},
      {"--quant-group", "N", "INT4 group size along the input dimension: 128 (default) or 64"},
  };
  return kFlags;
}

Status QuantFlags::take(std::string_view flag, std::string_view value) {
  const std::string f(flag);
  if (flag == "--quant") {
    Expected<QuantPolicy> p = parse_quant_policy(value);
    if (!p.ok()) return Status::Error(f + ": " + p.message());
    name = std::string(value);
    return Status::Ok();
  }
  if (flag == "--quant-group") {
    if (value.empty() || value.size() > 9 || value.find_first_not_of("0123456789") != value.npos)
      return Status::Error(f + " " + quoted(value) + " is not a positive whole number");
    QuantPolicy probe;
    Status s = set_quant_group(probe, std::stoi(std::string(value)));
    if (!s.ok()) return Status::Error(f + ": " + s.message());
    group = probe.group;
    return Status::Ok();
  }
  static const std::pair<const char*, QuantOverride> kParts[] = {
      {"--quant-experts", QuantOverride::kExperts},
      {"--quant-dense", QuantOverride::kDense},
      {"--quant-attn", QuantOverride::kAttn},
      {"--quant-vision", QuantOverride::kVision},
      {"--quant-lm-head", QuantOverride::kLmHead}};
  for (const auto& [part, which] : kParts) {
    if (flag != part) continue;
    Expected<WeightFormat> w = parse_weight_format(value);
    if (!w.ok()) return Status::Error(f + ": " + w.message());
    overrides.emplace_back(which, *w);
    return Status::Ok();
  }
  return Status::Error(f + ": not a --quant flag");
}

QuantPolicy QuantFlags::resolve() const {
  Expected<QuantPolicy> p = parse_quant_policy(name);  // checked by take()
  QuantPolicy q = p.ok() ? *p : QuantPolicy{};
  for (const auto& [which, f] : overrides) apply_quant_override(q, which, f);
  q.group = group;
  return q;
}

bool quantizable_class(TensorClass c) {
  return c != TensorClass::kEmbed && c != TensorClass::kNorm && c != TensorClass::kRouter;
}

std::string stored_format_name(StoredFormat f) {
  if (f.format != WeightFormat::kInt4) return weight_format_name(f.format);
  return strfmt("int4 g%d", f.group);
}

StoredFormat stored_format(const QuantPolicy& policy, TensorClass cls, int64_t out, int64_t in) {
  const WeightFormat want = policy.of(cls);
  if (want == WeightFormat::kBf16 || in <= 0 || !quantizable_class(cls)) return {};
  if (want == WeightFormat::kInt4)
    for (int group : {policy.group, kInt4GroupSmall})
      if (check_quant_shape(WeightFormat::kInt4, out, in, group).ok())
        return {WeightFormat::kInt4, group};
  if (check_quant_shape(WeightFormat::kInt8, out, in, 0).ok()) return {WeightFormat::kInt8, 0};
  return {};
}

uint64_t stored_bytes(StoredFormat f, int64_t out, int64_t in, uint64_t checkpoint_bytes) {
  if (f.format == WeightFormat::kBf16) return checkpoint_bytes;
  return quant_bytes(f.format, out, in, f.group);
}

}  // namespace dsocr
