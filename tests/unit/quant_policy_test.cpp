// The quantization policy (runtime/quant_policy.h): the class -> format table of every --quant
// name, the overrides, the INT4 group, which tensors can change format, and the bytes they take.
#include "runtime/quant_policy.h"

#include <gtest/gtest.h>

#include <map>

namespace dsocr {
namespace {

constexpr WeightFormat B = WeightFormat::kBf16, I8 = WeightFormat::kInt8, I4 = WeightFormat::kInt4;

QuantPolicy policy(std::string_view name) {
  Expected<QuantPolicy> p = parse_quant_policy(name);
  EXPECT_TRUE(p.ok()) << p.message();
  return p.ok() ? *p : QuantPolicy{};
}

// The table of quant_policy.h, row by row.
TEST(QuantPolicy, TablePerPolicy) {
  struct Row {
    TensorClass cls;
    WeightFormat bf16, int8, int4, mixed;
  };
  const Row rows[] = {
      {TensorClass::kRoutedExpert, B, I8, I4, I4},
      {TensorClass::kSharedExpert, B, I8, I4, I8},
      {TensorClass::kDenseMlp, B, I8, I4, I8},
      {TensorClass::kAttn, B, I8, I4, I8},
      {TensorClass::kLmHead, B, B, B, B},
      {TensorClass::kSam, B, B, B, B},
      {TensorClass::kClip, B, B, B, B},
      {TensorClass::kProjector, B, B, B, B},
      {TensorClass::kEmbed, B, B, B, B},
      {TensorClass::kNorm, B, B, B, B},
      {TensorClass::kRouter, B, B, B, B},
  };
  ASSERT_EQ(std::size(rows), static_cast<size_t>(kTensorClassCount));
  const QuantPolicy p[4] = {policy("bf16"), policy("int8"), policy("int4"), policy("mixed")};
  for (const Row& r : rows) {
    const char* c = tensor_class_name(r.cls);
    EXPECT_EQ(p[0].of(r.cls), r.bf16) << c;
    EXPECT_EQ(p[1].of(r.cls), r.int8) << c;
    EXPECT_EQ(p[2].of(r.cls), r.int4) << c;
    EXPECT_EQ(p[3].of(r.cls), r.mixed) << c;
  }
  for (const QuantPolicy& q : p) EXPECT_EQ(q.group, 128);
  EXPECT_TRUE(p[0].all_bf16());
  EXPECT_FALSE(p[3].all_bf16());
  EXPECT_TRUE(QuantPolicy{}.all_bf16());
  EXPECT_EQ(p[0].describe(), "all bf16");
  EXPECT_EQ(p[3].describe(),
            "routed_expert int4 (group 128); attn, dense_mlp, shared_expert int8; the rest bf16");
  EXPECT_EQ(p[3].name, "mixed");
}

TEST(QuantPolicy, UnknownNamesAreOneLineErrors) {
  for (const char* bad : {"", "fp8", "INT8", "mixed ", "int"}) {
    Expected<QuantPolicy> p = parse_quant_policy(bad);
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_NE(p.message().find(std::string("'") + bad + "' unknown"), std::string::npos)
        << p.message();
    EXPECT_NE(p.message().find("use bf16, int8, int4 or mixed"), std::string::npos);
  }
  EXPECT_FALSE(parse_weight_format("mixed").ok());
  EXPECT_NE(parse_weight_format("fp4").message().find("use bf16, int8 or int4"), std::string::npos);
  EXPECT_EQ(*parse_weight_format("int4"), I4);
}

TEST(QuantPolicy, OverridesSetTheirClassesOnly) {
  QuantPolicy p = policy("mixed");
  apply_quant_override(p, QuantOverride::kExperts, I8);
  EXPECT_EQ(p.of(TensorClass::kRoutedExpert), I8);
  EXPECT_EQ(p.of(TensorClass::kSharedExpert), I8);  // mixed's own
  apply_quant_override(p, QuantOverride::kDense, I4);
  EXPECT_EQ(p.of(TensorClass::kSharedExpert), I4);
  EXPECT_EQ(p.of(TensorClass::kDenseMlp), I4);
  EXPECT_EQ(p.of(TensorClass::kAttn), I8);
  apply_quant_override(p, QuantOverride::kAttn, B);
  EXPECT_EQ(p.of(TensorClass::kAttn), B);
  apply_quant_override(p, QuantOverride::kVision, I8);
  for (TensorClass c : {TensorClass::kSam, TensorClass::kClip, TensorClass::kProjector})
    EXPECT_EQ(p.of(c), I8) << tensor_class_name(c);
  apply_quant_override(p, QuantOverride::kLmHead, I4);
  EXPECT_EQ(p.of(TensorClass::kLmHead), I4);
  // No override reaches the never-quantized classes.
  for (TensorClass c : {TensorClass::kEmbed, TensorClass::kNorm, TensorClass::kRouter})
    EXPECT_EQ(p.of(c), B) << tensor_class_name(c);
  // An override on bf16 quantizes that class alone.
  QuantPolicy q = policy("bf16");
  apply_quant_override(q, QuantOverride::kExperts, I4);
  EXPECT_EQ(q.describe(), "routed_expert int4 (group 128); the rest bf16");
}

TEST(QuantPolicy, Group) {
  QuantPolicy p = policy("int4");
  EXPECT_TRUE(set_quant_group(p, 64).ok());
  EXPECT_EQ(p.group, 64);
  for (int bad : {0, 32, 100, 256}) {
    Status s = set_quant_group(p, bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find("use 128 or 64"), std::string::npos) << s.message();
  }
  EXPECT_EQ(p.group, 64);
}

TEST(QuantPolicy, StoredFormatPerTensor) {
  const QuantPolicy int4 = policy("int4");
  const StoredFormat bf16{}, g128{I4, 128}, g64{I4, 64}, int8{I8, 0};
  // Expert and attention matrices: the policy's format.
  EXPECT_EQ(stored_format(int4, TensorClass::kRoutedExpert, 896, 1280), g128);
  EXPECT_EQ(stored_format(int4, TensorClass::kRoutedExpert, 1280, 896), g128);
  // Layer 0's down_proj: k = 6848 = 53.5 x 128 -> group 64.
  EXPECT_EQ(stored_format(int4, TensorClass::kDenseMlp, 1280, 6848), g64);
  EXPECT_EQ(stored_format(int4, TensorClass::kDenseMlp, 6848, 1280), g128);
  // No INT4 group fits k = 48 -> INT8; k = 40 fits nothing -> BF16.
  EXPECT_EQ(stored_format(int4, TensorClass::kAttn, 16, 48), int8);
  EXPECT_EQ(stored_format(int4, TensorClass::kAttn, 16, 40), bf16);
  // Not an nn.Linear weight (in = 0): BF16.
  EXPECT_EQ(stored_format(int4, TensorClass::kAttn, 0, 0), bf16);
  // Never-quantized classes, even with a format set by hand.
  QuantPolicy all = int4;
  all.format.fill(I8);
  for (TensorClass c : {TensorClass::kEmbed, TensorClass::kNorm, TensorClass::kRouter}) {
    EXPECT_FALSE(quantizable_class(c));
    EXPECT_EQ(stored_format(all, c, 64, 1280), bf16) << tensor_class_name(c);
  }
  EXPECT_EQ(stored_format(all, TensorClass::kLmHead, 129280, 1280), int8);
  EXPECT_EQ(stored_format_name(g64), "int4 g64");
  EXPECT_EQ(stored_format_name(int8), "int8");
  // Bytes: values + scales; BF16 keeps the checkpoint's size.
  EXPECT_EQ(stored_bytes(g128, 896, 1280, 896 * 1280 * 2), 896u * 640 + 896 * 10 * 2);
  EXPECT_EQ(stored_bytes(g64, 1280, 6848, 0), 1280u * 3424 + 1280 * 107 * 2);
  EXPECT_EQ(stored_bytes(int8, 129280, 1280, 0), 129280u * 1280 + 129280 * 2);
  EXPECT_EQ(stored_bytes(bf16, 0, 0, 12345), 12345u);
}

}  // namespace
}  // namespace dsocr
