// Quantization policy: which tensor classes are stored in which weight format (DESIGN.md §7;
// formats and layouts in kernels/quant.h).
//
// Policies (--quant) and per-class overrides (--quant-experts, --quant-dense, --quant-attn,
// --quant-vision, --quant-lm-head, each bf16|int8|int4; --quant-group 128|64 for INT4):
//
//   class (override)                      bf16   int8   int4   mixed
//   routed_expert      (--quant-experts)  bf16   int8   int4   int4
//   shared_expert      (--quant-dense)    bf16   int8   int4   int8
//   dense_mlp          (--quant-dense)    bf16   int8   int4   int8
//   attn               (--quant-attn)     bf16   int8   int4   int8
//   lm_head            (--quant-lm-head)  bf16   bf16   bf16   bf16
//   sam, clip, projector (--quant-vision) bf16   bf16   bf16   bf16
//   embed, norm, router                   bf16 always
//
// int8 / int4 quantize every decoder linear class (attention, dense MLP, shared and routed
// experts) and nothing else; mixed spends the bits where a decode step reads every byte
// (attention, the dense MLP and the shared experts, read for every token) and saves them where
// the bytes are (the routed experts: 4.84 of the 6.67 GB). lm_head stays BF16 in every policy:
// it decides the token (argmax over 129,280 logits) and is one tensor, so it is the user's call
// (--quant-lm-head). --quant-dense covers the shared experts with the dense MLP because both are
// always-on FFNs (mixed treats them alike); --quant-experts is the routed experts only.
// Never quantized, whatever the flags: embeddings (rows are gathered, not multiplied), norms,
// biases, positional tables, convolutions (SAM patch embed, neck, net_2, net_3) and the router
// (64 x 1280, 164 kB per layer, whose logits decide the routing). Inside a quantizable class only
// nn.Linear weights (TensorSpec::linear) change format.
//
// Shape rules per tensor (check_quant_shape): an INT4 weight whose k is not a multiple of the
// group (layer 0's down_proj, k = 6848 with group 128) is stored with group 64; one that fits no
// INT4 group falls back to INT8, and one that fits neither stays BF16. Every such tensor is
// visible in --inspect (the class lists all the formats it holds).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/quant.h"
#include "loader/schema.h"
#include "loader/status.h"

namespace dsocr {

struct QuantPolicy {
  std::string name = "bf16";                             // the --quant value it came from
  std::array<WeightFormat, kTensorClassCount> format{};  // per TensorClass; {} = all kBf16
  int group = kInt4GroupDefault;                         // INT4 group along k: 128 or 64

  WeightFormat of(TensorClass c) const { return format[static_cast<int>(c)]; }
  bool all_bf16() const;
  // "routed_expert int4 (group 128); attn, dense_mlp, shared_expert int8; the rest bf16".
  std::string describe() const;
};

// "bf16" | "int8" | "int4" | "mixed" (the table above). The error lists the valid names.
Expected<QuantPolicy> parse_quant_policy(std::string_view name);
// "bf16" | "int8" | "int4".
Expected<WeightFormat> parse_weight_format(std::string_view text);

// The per-class overrides, and the classes each one sets.
enum class QuantOverride : uint8_t { kExperts, kDense, kAttn, kVision, kLmHead };
void apply_quant_override(QuantPolicy& policy, QuantOverride which, WeightFormat f);
// 128 or 64; anything else is an error naming the valid groups.
Status set_quant_group(QuantPolicy& policy, int group);

// The --quant flags of dsocr-run and dsocr-bench: --quant, the --quant-<part> overrides and
// --quant-group, accepted in any order and resolved after parsing (the policy's table, then the
// overrides in the order given, then the group).
struct QuantFlags {
  struct Flag {
    const char* name;   // "--quant-experts"
    const char* value;  // value placeholder: "P", "F", "N"
    const char* help;
  };
  static const std::vector<Flag>& all();  // every flag take() accepts, for --help

  std::string name = "bf16";                                      // --quant
  std::vector<std::pair<QuantOverride, WeightFormat>> overrides;  // --quant-<part>
  int group = kInt4GroupDefault;                                  // --quant-group

  // Checks one flag's value and records it; the error starts with the flag ("--quant: ...").
  // PRECOND: `flag` is one of all().
  Status take(std::string_view flag, std::string_view value);
  QuantPolicy resolve() const;  // every value was checked by take()
};

// False for the classes no policy may quantize (embed, norm, router).
bool quantizable_class(TensorClass c);

// How one tensor is stored.
struct StoredFormat {
  WeightFormat format = WeightFormat::kBf16;
  int group = 0;  // INT4 only
  bool operator==(const StoredFormat&) const = default;
};
std::string stored_format_name(StoredFormat f);  // "bf16", "int8", "int4 g128"

// The format of a tensor of class `cls` under `policy`. `out`, `in`: the [out, in] shape of an
// nn.Linear weight; in == 0 for any other tensor (stays BF16). Applies the shape rules above.
StoredFormat stored_format(const QuantPolicy& policy, TensorClass cls, int64_t out, int64_t in);
// Bytes of such a tensor as stored: values + scales (kernels/quant.h quant_bytes); BF16 (and
// every non-linear tensor): `checkpoint_bytes`, the tensor's size in the checkpoint.
uint64_t stored_bytes(StoredFormat f, int64_t out, int64_t in, uint64_t checkpoint_bytes);

}  // namespace dsocr
