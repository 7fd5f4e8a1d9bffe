// Parser, compiler and Pike VM for SplitRegex (see the header for the supported syntax).
//
// Pattern -> AST (Node) -> program of Inst, as in Russ Cox's "Regular Expression Matching: the
// Virtual Machine Approach": threads are kept in priority order, so the first thread to reach
// kMatch is the match a backtracking engine (Oniguruma) would report; lower-priority threads are
// then cut, higher-priority ones may still extend it.
#include "loader/tokenizer_regex.h"

#include <algorithm>
#include <array>

#include "loader/unicode.h"

namespace dsocr {

namespace u = unicode;

namespace {

constexpr int kMaxRepeat = 1000;        // largest {n,m} bound
constexpr size_t kMaxProgram = 100000;  // instructions
constexpr int kMaxNesting = 100;        // group depth
constexpr size_t kMaxClasses = 1000;    // each costs an 8 KiB bitmap built at compile time

struct ClassItem {
  enum Kind : uint8_t { kRange, kCategories, kWhiteSpace };
  Kind kind = kRange;
  bool negated = false;
  uint32_t lo = 0, hi = 0;  // kRange
  uint32_t mask = 0;        // kCategories: bits over GeneralCategory

  bool contains(uint32_t cp) const {
    bool in = false;
    switch (kind) {
      case kRange:
        in = cp >= lo && cp <= hi;
        break;
      case kCategories:
        in = (mask >> u::category(cp)) & 1;
        break;
      case kWhiteSpace:
        in = u::is_white_space(cp);
        break;
    }
    return in != negated;
  }
};

// Code points that (?i) folds together with cp: the other ASCII case, plus LATIN SMALL LETTER
// LONG S (s) and KELVIN SIGN (k), the only non-ASCII characters whose case folding is ASCII.
int fold_variants(uint32_t cp, std::array<uint32_t, 3>& out) {
  int n = 0;
  if (cp >= 'a' && cp <= 'z') out[n++] = cp - 32;
  if (cp >= 'A' && cp <= 'Z') out[n++] = cp + 32;
  uint32_t lower = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  if (lower == 's') out[n++] = 0x017F;
  if (lower == 'k') out[n++] = 0x212A;
  if (cp == 0x017F) out[n++] = 's', out[n++] = 'S';
  if (cp == 0x212A) out[n++] = 'k', out[n++] = 'K';
  return n;
}

}  // namespace

struct SplitRegex::CharClass {
  bool negated = false;
  bool fold = false;  // (?i)
  std::vector<ClassItem> items;
  std::vector<uint64_t> bmp;  // [1024] membership of U+0000..U+FFFF, filled by finish()

  bool raw(uint32_t cp) const {
    for (const ClassItem& it : items)
      if (it.contains(cp)) return true;
    return false;
  }
  bool eval(uint32_t cp) const {
    bool in = raw(cp);
    if (!in && fold) {
      std::array<uint32_t, 3> v{};
      int n = fold_variants(cp, v);
      for (int i = 0; i < n && !in; ++i) in = raw(v[i]);
    }
    return in != negated;
  }
  void finish() {
    bmp.assign(1024, 0);
    for (uint32_t cp = 0; cp < 0x10000; ++cp)
      if (eval(cp)) bmp[cp >> 6] |= uint64_t{1} << (cp & 63);
  }
  bool matches(uint32_t cp) const {
    if (cp < 0x10000) return (bmp[cp >> 6] >> (cp & 63)) & 1;
    return eval(cp);
  }
};

SplitRegex::SplitRegex() = default;
SplitRegex::~SplitRegex() = default;
SplitRegex::SplitRegex(SplitRegex&&) noexcept = default;
SplitRegex& SplitRegex::operator=(SplitRegex&&) noexcept = default;

namespace {

struct Node {
  enum Kind { kEmpty, kChar, kClass, kConcat, kAlt, kRepeat, kLook } kind = kEmpty;
  uint32_t cp = 0;       // kChar
  int cls = -1;          // kClass, kLook
  bool negated = false;  // kLook: (?!X)
  int min = 0, max = 0;  // kRepeat; max < 0: unbounded
  std::vector<Node> kids;
};

bool nullable(const Node& n) {
  switch (n.kind) {
    case Node::kEmpty:
    case Node::kLook:
      return true;
    case Node::kChar:
    case Node::kClass:
      return false;
    case Node::kConcat:
      return std::all_of(n.kids.begin(), n.kids.end(), [](const Node& k) { return nullable(k); });
    case Node::kAlt:
      return std::any_of(n.kids.begin(), n.kids.end(), [](const Node& k) { return nullable(k); });
    case Node::kRepeat:
      return n.min == 0 || nullable(n.kids[0]);
  }
  return true;
}

std::string clip(std::string_view s) {
  return s.size() <= 120 ? std::string(s) : std::string(s.substr(0, 117)) + "...";
}

// Recursive-descent parser over the pattern's code points.
class Parser {
 public:
  Parser(std::vector<uint32_t> p, std::vector<SplitRegex::CharClass>& classes)
      : p_(std::move(p)), classes_(classes) {}

  bool parse(Node* root) {
    if (!parse_alt(root, 0)) return false;
    if (i_ < p_.size()) return fail("unmatched ')'");
    return true;
  }
  const std::string& error() const { return error_; }

 private:
  bool fail(const std::string& what) {
    if (error_.empty()) error_ = strfmt("%s at offset %zu", what.c_str(), i_);
    return false;
  }
  bool at_end() const { return i_ >= p_.size(); }
  uint32_t peek(size_t k = 0) const { return i_ + k < p_.size() ? p_[i_ + k] : 0xFFFFFFFF; }

  bool parse_alt(Node* out, int depth) {
    if (depth > kMaxNesting) return fail("groups nested too deeply");
    Node alt;
    alt.kind = Node::kAlt;
    for (;;) {
      Node seq;
      if (!parse_concat(&seq, depth)) return false;
      alt.kids.push_back(std::move(seq));
      if (peek() != '|') break;
      ++i_;
    }
    *out = alt.kids.size() == 1 ? std::move(alt.kids[0]) : std::move(alt);
    return true;
  }

  bool parse_concat(Node* out, int depth) {
    Node seq;
    seq.kind = Node::kConcat;
    while (!at_end() && peek() != '|' && peek() != ')') {
      Node atom;
      if (!parse_atom(&atom, depth)) return false;
      if (!parse_quantifier(&atom)) return false;
      seq.kids.push_back(std::move(atom));
    }
    if (seq.kids.empty()) {
      out->kind = Node::kEmpty;
    } else if (seq.kids.size() == 1) {
      *out = std::move(seq.kids[0]);
    } else {
      *out = std::move(seq);
    }
    return true;
  }

  // {n} {n,} {n,m} {,m}; returns false (without consuming) if the text is not an interval,
  // which Oniguruma then reads as a literal '{'.
  bool read_interval(int* lo, int* hi) {
    size_t j = i_ + 1;
    auto number = [&](int* v) {
      size_t start = j;
      long long x = 0;
      while (j < p_.size() && p_[j] >= '0' && p_[j] <= '9') {
        x = std::min<long long>(x * 10 + (p_[j] - '0'), 1 << 30);
        ++j;
      }
      *v = static_cast<int>(x);
      return j > start;
    };
    int a = 0, b = 0;
    bool has_a = number(&a);
    if (j < p_.size() && p_[j] == '}') {
      if (!has_a) return false;
      *lo = *hi = a;
    } else if (j < p_.size() && p_[j] == ',') {
      ++j;
      bool has_b = number(&b);
      if (!has_a && !has_b) return false;
      if (j >= p_.size() || p_[j] != '}') return false;
      *lo = has_a ? a : 0;
      *hi = has_b ? b : -1;
    } else {
      return false;
    }
    i_ = j + 1;
    return true;
  }

  bool parse_quantifier(Node* atom) {
    if (at_end()) return true;
    int lo = 0, hi = 0;
    uint32_t c = peek();
    if (c == '?') {
      lo = 0, hi = 1, ++i_;
    } else if (c == '*') {
      lo = 0, hi = -1, ++i_;
    } else if (c == '+') {
      lo = 1, hi = -1, ++i_;
    } else if (c == '{') {
      size_t at = i_;
      if (!read_interval(&lo, &hi)) return true;  // literal '{', parsed as the next atom
      if (lo > kMaxRepeat || hi > kMaxRepeat) {
        i_ = at;
        return fail(strfmt("repetition count above %d", kMaxRepeat));
      }
      if (hi >= 0 && hi < lo) {
        i_ = at;
        return fail("repetition {n,m} with m < n");
      }
    } else {
      return true;
    }
    if (atom->kind == Node::kLook) return fail("quantified lookahead is unsupported");
    if (atom->kind == Node::kEmpty) return fail("nothing to repeat");
    if (peek() == '?') return fail("lazy quantifier is unsupported");
    if (peek() == '+') return fail("possessive quantifier is unsupported");
    if (peek() == '*' || peek() == '{') return fail("nested quantifier is unsupported");
    Node rep;
    rep.kind = Node::kRepeat;
    rep.min = lo;
    rep.max = hi;
    rep.kids.push_back(std::move(*atom));
    *atom = std::move(rep);
    return true;
  }

  bool parse_atom(Node* out, int depth) {
    uint32_t c = peek();
    switch (c) {
      case '(':
        return parse_group(out, depth);
      case '[': {
        ++i_;
        int cls = -1;
        if (!parse_class(&cls)) return false;
        out->kind = Node::kClass;
        out->cls = cls;
        return true;
      }
      case '.': {
        ++i_;
        SplitRegex::CharClass cc;
        cc.negated = true;
        cc.items.push_back({ClassItem::kRange, false, '\n', '\n', 0});
        return emit_class(std::move(cc), out);
      }
      case '^':
      case '$':
        return fail("anchors are unsupported");
      case '*':
      case '+':
      case '?':
        return fail("nothing to repeat");
      case '\\': {
        ++i_;
        ClassItem item;
        uint32_t cp = 0;
        bool is_set = false;
        if (!parse_escape(false, &is_set, &item, &cp)) return false;
        if (is_set) {
          SplitRegex::CharClass cc;
          cc.items.push_back(item);
          return emit_class(std::move(cc), out);
        }
        return emit_char(cp, out);
      }
      default:
        ++i_;
        return emit_char(c, out);
    }
  }

  bool parse_group(Node* out, int depth) {
    ++i_;  // '('
    bool fold = false;
    if (peek() == '?') {
      uint32_t k = peek(1);
      if (k == ':') {
        i_ += 2;
      } else if (k == 'i' && peek(2) == ':') {
        i_ += 3;
        fold = true;
      } else if (k == '=' || k == '!') {
        i_ += 2;
        return parse_lookahead(k == '!', out);
      } else if (k == '<') {
        return fail("lookbehind and named groups are unsupported");
      } else {
        return fail("group syntax (?" + std::string(1, static_cast<char>(k < 128 ? k : '?')) +
                    " is unsupported");
      }
    }
    bool saved = fold_;
    fold_ = fold_ || fold;
    if (!parse_alt(out, depth + 1)) return false;
    fold_ = saved;
    if (peek() != ')') return fail("missing ')'");
    ++i_;
    return true;
  }

  bool parse_lookahead(bool negated, Node* out) {
    Node inner;
    size_t at = i_;
    if (!at_end() && peek() != ')' && peek() != '(' && peek() != '|') {
      if (!parse_atom(&inner, 0)) return false;
    }
    if (peek() != ')' || (inner.kind != Node::kChar && inner.kind != Node::kClass)) {
      i_ = at;
      return fail("lookahead must hold exactly one character or class");
    }
    ++i_;
    if (inner.kind == Node::kChar) {
      SplitRegex::CharClass cc;
      cc.items.push_back({ClassItem::kRange, false, inner.cp, inner.cp, 0});
      cc.fold = fold_;
      if (classes_.size() >= kMaxClasses) return fail(strfmt("more than %zu classes", kMaxClasses));
      cc.finish();
      inner.cls = static_cast<int>(classes_.size());
      classes_.push_back(std::move(cc));
    }
    out->kind = Node::kLook;
    out->negated = negated;
    out->cls = inner.cls;
    return true;
  }

  bool emit_char(uint32_t cp, Node* out) {
    bool cased = cp < 128 && ((cp | 32) >= 'a' && (cp | 32) <= 'z');
    if (fold_ && !cased && cp >= 128)
      return fail("case-insensitive non-ASCII literal is unsupported");
    if (fold_ && cased) {
      SplitRegex::CharClass cc;
      cc.items.push_back({ClassItem::kRange, false, cp, cp, 0});
      return emit_class(std::move(cc), out);
    }
    out->kind = Node::kChar;
    out->cp = cp;
    return true;
  }

  bool emit_class(SplitRegex::CharClass cc, Node* out) {
    if (fold_) {
      for (const ClassItem& it : cc.items) {
        if (it.kind == ClassItem::kRange && it.hi >= 128)
          return fail("case-insensitive non-ASCII range is unsupported");
        constexpr uint32_t kCased = u::cat_bit(u::kLu) | u::cat_bit(u::kLl) | u::cat_bit(u::kLt);
        uint32_t cased = it.mask & kCased;
        if (it.kind == ClassItem::kCategories && cased != 0 && cased != kCased)
          return fail("case-insensitive \\p{Lu}/\\p{Ll}/\\p{Lt} is unsupported");
      }
      cc.fold = true;
    }
    if (classes_.size() >= kMaxClasses) return fail(strfmt("more than %zu classes", kMaxClasses));
    cc.finish();
    out->kind = Node::kClass;
    out->cls = static_cast<int>(classes_.size());
    classes_.push_back(std::move(cc));
    return true;
  }

  // After '['. Items: single characters, ranges a-b, escapes and \p{..} sets.
  bool parse_class(int* cls) {
    SplitRegex::CharClass cc;
    if (peek() == '^') {
      cc.negated = true;
      ++i_;
    }
    bool first = true;
    for (;;) {
      if (at_end()) return fail("unterminated character class");
      uint32_t c = peek();
      if (c == ']' && !first) {
        ++i_;
        break;
      }
      first = false;
      if (c == '[') return fail("nested classes and POSIX brackets are unsupported");
      if (c == '&' && peek(1) == '&') return fail("class intersection && is unsupported");
      ClassItem item;
      uint32_t lo = 0;
      bool is_set = false;
      if (!parse_class_atom(&is_set, &item, &lo)) return false;
      if (is_set) {
        cc.items.push_back(item);
        continue;
      }
      if (peek() == '-' && peek(1) != ']' && i_ + 1 < p_.size()) {
        ++i_;
        uint32_t hi = 0;
        bool hi_set = false;
        if (peek() == '[') return fail("nested classes and POSIX brackets are unsupported");
        if (!parse_class_atom(&hi_set, &item, &hi)) return false;
        if (hi_set) return fail("class range ends in a set");
        if (hi < lo) return fail("class range out of order");
        cc.items.push_back({ClassItem::kRange, false, lo, hi, 0});
      } else {
        cc.items.push_back({ClassItem::kRange, false, lo, lo, 0});
      }
    }
    Node tmp;
    if (!emit_class(std::move(cc), &tmp)) return false;
    *cls = tmp.cls;
    return true;
  }

  bool parse_class_atom(bool* is_set, ClassItem* item, uint32_t* cp) {
    *is_set = false;
    if (peek() == '\\') {
      ++i_;
      return parse_escape(true, is_set, item, cp);
    }
    *cp = peek();
    ++i_;
    return true;
  }

  bool hex(size_t max_digits, uint32_t* v) {
    size_t n = 0;
    uint32_t x = 0;
    while (n < max_digits && !at_end()) {
      uint32_t c = peek(), d;
      if (c >= '0' && c <= '9')
        d = c - '0';
      else if ((c | 32) >= 'a' && (c | 32) <= 'f')
        d = (c | 32) - 'a' + 10;
      else
        break;
      x = x * 16 + d;
      ++n, ++i_;
    }
    *v = x;
    return n > 0;
  }

  // After '\\'. Sets *is_set and *item for \s \S \p \P, else *cp.
  bool parse_escape(bool in_class, bool* is_set, ClassItem* item, uint32_t* cp) {
    if (at_end()) return fail("pattern ends with '\\'");
    uint32_t c = peek();
    size_t at = i_ - 1;
    ++i_;
    *is_set = false;
    switch (c) {
      case 't':
        *cp = '\t';
        return true;
      case 'n':
        *cp = '\n';
        return true;
      case 'r':
        *cp = '\r';
        return true;
      case 'f':
        *cp = '\f';
        return true;
      case 'v':
        *cp = '\v';
        return true;
      case 'a':
        *cp = 0x07;
        return true;
      case 'e':
        *cp = 0x1B;
        return true;
      case 's':
      case 'S':
        *is_set = true;
        *item = {ClassItem::kWhiteSpace, c == 'S', 0, 0, 0};
        return true;
      case 'p':
      case 'P':
        return parse_property(c == 'P', item, is_set);
      case 'x':
        if (peek() == '{') {
          ++i_;
          if (!hex(8, cp) || peek() != '}' || *cp > 0x10FFFF) return fail("bad \\x{...} escape");
          ++i_;
          return true;
        }
        if (!hex(2, cp)) return fail("bad \\x escape");
        return true;
      case 'u':
        if (!hex(4, cp)) return fail("bad \\u escape");
        return true;
      default:
        break;
    }
    bool alnum = (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
    if (alnum) {
      i_ = at;
      return fail(strfmt("escape \\%c is unsupported%s", static_cast<char>(c),
                         in_class ? " in a class" : ""));
    }
    *cp = c;  // escaped punctuation or non-ASCII: itself
    return true;
  }

  bool parse_property(bool negated, ClassItem* item, bool* is_set) {
    if (peek() != '{') return fail("\\p needs {Name}");
    ++i_;
    if (peek() == '^') {
      negated = !negated;
      ++i_;
    }
    std::string name;
    while (!at_end() && peek() != '}') {
      uint32_t c = peek();
      ++i_;
      if (c == ' ' || c == '_' || c == '-') continue;
      if (c >= 128 || name.size() > 40) return fail("bad property name");
      name += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    if (at_end()) return fail("unterminated \\p{");
    ++i_;
    uint32_t mask = 0;
    if (!property_mask(name, &mask))
      return fail("Unicode property \\p{" + name + "} is unsupported");
    *is_set = true;
    *item = {ClassItem::kCategories, negated, 0, 0, mask};
    return true;
  }

  static bool property_mask(const std::string& n, uint32_t* mask) {
    using namespace u;
    struct Entry {
      const char* short_name;
      const char* long_name;
      uint32_t mask;
    };
    static const Entry kTable[] = {
        {"l", "letter", kMaskL},
        {"lc", "casedletter", cat_bit(kLu) | cat_bit(kLl) | cat_bit(kLt)},
        {"lu", "uppercaseletter", cat_bit(kLu)},
        {"ll", "lowercaseletter", cat_bit(kLl)},
        {"lt", "titlecaseletter", cat_bit(kLt)},
        {"lm", "modifierletter", cat_bit(kLm)},
        {"lo", "otherletter", cat_bit(kLo)},
        {"m", "mark", kMaskM},
        {"mn", "nonspacingmark", cat_bit(kMn)},
        {"mc", "spacingmark", cat_bit(kMc)},
        {"me", "enclosingmark", cat_bit(kMe)},
        {"n", "number", kMaskN},
        {"nd", "decimalnumber", cat_bit(kNd)},
        {"nl", "letternumber", cat_bit(kNl)},
        {"no", "othernumber", cat_bit(kNo)},
        {"p", "punctuation", kMaskP},
        {"pc", "connectorpunctuation", cat_bit(kPc)},
        {"pd", "dashpunctuation", cat_bit(kPd)},
        {"ps", "openpunctuation", cat_bit(kPs)},
        {"pe", "closepunctuation", cat_bit(kPe)},
        {"pi", "initialpunctuation", cat_bit(kPi)},
        {"pf", "finalpunctuation", cat_bit(kPf)},
        {"po", "otherpunctuation", cat_bit(kPo)},
        {"s", "symbol", kMaskS},
        {"sm", "mathsymbol", cat_bit(kSm)},
        {"sc", "currencysymbol", cat_bit(kSc)},
        {"sk", "modifiersymbol", cat_bit(kSk)},
        {"so", "othersymbol", cat_bit(kSo)},
        {"z", "separator", kMaskZ},
        {"zs", "spaceseparator", cat_bit(kZs)},
        {"zl", "lineseparator", cat_bit(kZl)},
        {"zp", "paragraphseparator", cat_bit(kZp)},
        {"c", "other", kMaskC},
        {"cc", "control", cat_bit(kCc)},
        {"cf", "format", cat_bit(kCf)},
        {"cs", "surrogate", cat_bit(kCs)},
        {"co", "privateuse", cat_bit(kCo)},
        {"cn", "unassigned", cat_bit(kCn)},
        {"any", "any", (uint32_t{1} << kCategoryCount) - 1},
    };
    for (const Entry& e : kTable) {
      if (n == e.short_name || n == e.long_name) {
        *mask = e.mask;
        return true;
      }
    }
    return false;
  }

  std::vector<uint32_t> p_;
  size_t i_ = 0;
  bool fold_ = false;
  std::vector<SplitRegex::CharClass>& classes_;
  std::string error_;
};

class Compiler {
 public:
  explicit Compiler(std::vector<SplitRegex::Inst>& prog) : prog_(prog) {}

  bool compile(const Node& n) {
    using I = SplitRegex::Inst;
    if (prog_.size() > kMaxProgram) return false;
    switch (n.kind) {
      case Node::kEmpty:
        return true;
      case Node::kChar:
        emit({I::kChar, n.cp, 0});
        return true;
      case Node::kClass:
        emit({I::kClass, static_cast<uint32_t>(n.cls), 0});
        return true;
      case Node::kLook:
        emit({n.negated ? I::kLookNot : I::kLook, static_cast<uint32_t>(n.cls), 0});
        return true;
      case Node::kConcat:
        for (const Node& k : n.kids)
          if (!compile(k)) return false;
        return true;
      case Node::kAlt: {
        std::vector<size_t> jumps;
        for (size_t i = 0; i < n.kids.size(); ++i) {
          if (i + 1 < n.kids.size()) {
            size_t split = emit({I::kSplit, 0, 0});
            prog_[split].x = pc();
            if (!compile(n.kids[i])) return false;
            jumps.push_back(emit({I::kJmp, 0, 0}));
            prog_[split].y = pc();
          } else if (!compile(n.kids[i])) {
            return false;
          }
        }
        for (size_t j : jumps) prog_[j].x = pc();
        return true;
      }
      case Node::kRepeat: {
        const Node& sub = n.kids[0];
        if (n.max < 0 && n.min >= 1) {  // X{n,}: n-1 copies, then L: X; split(L, out)
          for (int i = 0; i + 1 < n.min; ++i)
            if (!compile(sub)) return false;
          uint32_t loop = pc();
          if (!compile(sub)) return false;
          emit({I::kSplit, loop, pc() + 1});
          return true;
        }
        for (int i = 0; i < n.min; ++i)
          if (!compile(sub)) return false;
        if (n.max < 0) {  // X*: L: split(body, out); body; jmp L
          size_t split = emit({I::kSplit, 0, 0});
          prog_[split].x = pc();
          if (!compile(sub)) return false;
          emit({I::kJmp, static_cast<uint32_t>(split), 0});
          prog_[split].y = pc();
          return true;
        }
        std::vector<size_t> splits;  // X{0,k}: nested optionals, each may skip to the end
        for (int i = n.min; i < n.max; ++i) {
          size_t split = emit({I::kSplit, 0, 0});
          prog_[split].x = pc();
          splits.push_back(split);
          if (!compile(sub)) return false;
        }
        for (size_t s : splits) prog_[s].y = pc();
        return true;
      }
    }
    return false;
  }

 private:
  uint32_t pc() const { return static_cast<uint32_t>(prog_.size()); }
  size_t emit(SplitRegex::Inst in) {
    prog_.push_back(in);
    return prog_.size() - 1;
  }
  std::vector<SplitRegex::Inst>& prog_;
};

}  // namespace

Expected<SplitRegex> SplitRegex::compile(std::string_view pattern) {
  auto err = [&](const std::string& what) {
    return Status::Error("regex \"" + clip(pattern) + "\": " + what);
  };
  std::vector<uint32_t> cps;
  for (size_t i = 0; i < pattern.size();) {
    uint32_t cp = 0;
    i += u::decode_utf8(pattern, i, &cp);
    if (cp >= u::kInvalidBase) return err("invalid UTF-8");
    cps.push_back(cp);
  }
  SplitRegex re;
  re.pattern_ = std::string(pattern);
  Node root;
  Parser parser(std::move(cps), re.classes_);
  if (!parser.parse(&root)) return err(parser.error());
  if (nullable(root)) return err("pattern can match the empty string (unsupported)");
  Compiler compiler(re.prog_);
  if (!compiler.compile(root) || re.prog_.size() > kMaxProgram)
    return err(strfmt("pattern compiles to more than %zu instructions", kMaxProgram));
  re.prog_.push_back({Inst::kMatch, 0, 0});

  // First-character filter: consuming instructions reachable from the start without input.
  std::vector<uint8_t> seen(re.prog_.size(), 0);
  std::vector<uint32_t> stack = {0};
  while (!stack.empty()) {
    uint32_t pc = stack.back();
    stack.pop_back();
    if (seen[pc]) continue;
    seen[pc] = 1;
    const Inst& in = re.prog_[pc];
    switch (in.op) {
      case Inst::kJmp:
        stack.push_back(in.x);
        break;
      case Inst::kSplit:
        stack.push_back(in.x), stack.push_back(in.y);
        break;
      case Inst::kLook:
      case Inst::kLookNot:
        stack.push_back(pc + 1);
        break;
      case Inst::kChar:
      case Inst::kClass:
        re.first_pcs_.push_back(pc);
        break;
      case Inst::kMatch:
        break;  // unreachable: the pattern is not nullable
    }
  }
  re.first_bits_.assign(1024, 0);
  for (uint32_t pc : re.first_pcs_) {
    const Inst& in = re.prog_[pc];
    if (in.op == Inst::kChar) {
      if (in.x < 0x10000) re.first_bits_[in.x >> 6] |= uint64_t{1} << (in.x & 63);
    } else {
      const std::vector<uint64_t>& b = re.classes_[in.x].bmp;
      for (size_t w = 0; w < 1024; ++w) re.first_bits_[w] |= b[w];
    }
  }
  return re;
}

Expected<SplitRegex> SplitRegex::literal(std::string_view text) {
  if (text.empty()) return Status::Error("split string is empty");
  std::string escaped;
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    size_t n = u::decode_utf8(text, i, &cp);
    if (cp >= u::kInvalidBase) return Status::Error("split string is not valid UTF-8");
    if (cp < 128 && !((cp | 32) >= 'a' && (cp | 32) <= 'z') && !(cp >= '0' && cp <= '9')) {
      escaped += strfmt("\\x{%X}", cp);  // any ASCII non-alphanumeric, controls included
    } else {
      escaped.append(text.substr(i, n));
    }
    i += n;
  }
  DSOCR_ASSIGN_OR_RETURN(SplitRegex re, compile(escaped));
  re.pattern_ = std::string(text);
  return re;
}

bool SplitRegex::consumes(const Inst& in, uint32_t cp) const {
  return in.op == Inst::kChar ? cp == in.x : classes_[in.x].matches(cp);
}

bool SplitRegex::search(const uint32_t* cps, size_t n, size_t from, Scratch& s, uint32_t* ms,
                        uint32_t* me) const {
  const size_t np = prog_.size();
  for (Scratch::List* l : {&s.a, &s.b}) {
    if (l->sparse.size() < np) l->sparse.resize(np), l->pc.resize(np), l->start.resize(np);
    l->n = 0;
  }
  Scratch::List* cur = &s.a;
  Scratch::List* next = &s.b;

  // Adds the thread at `pc0` and everything reachable without input, in priority order.
  auto add = [&](Scratch::List& l, uint32_t pc0, uint32_t start, size_t pos) {
    s.stack.clear();
    s.stack.push_back(pc0);
    while (!s.stack.empty()) {
      uint32_t pc = s.stack.back();
      s.stack.pop_back();
      uint32_t k = l.sparse[pc];
      if (k < l.n && l.pc[k] == pc) continue;
      l.sparse[pc] = l.n;
      l.pc[l.n] = pc;
      l.start[l.n] = start;
      ++l.n;
      const Inst& in = prog_[pc];
      switch (in.op) {
        case Inst::kJmp:
          s.stack.push_back(in.x);
          break;
        case Inst::kSplit:
          s.stack.push_back(in.y), s.stack.push_back(in.x);
          break;
        case Inst::kLook:
        case Inst::kLookNot: {
          bool next_in = pos < n && classes_[in.x].matches(cps[pos]);
          if (next_in == (in.op == Inst::kLook)) s.stack.push_back(pc + 1);
          break;
        }
        default:
          break;  // kChar, kClass, kMatch wait in the list
      }
    }
  };
  auto may_start = [&](uint32_t cp) {
    if (cp < 0x10000) return ((first_bits_[cp >> 6] >> (cp & 63)) & 1) != 0;
    for (uint32_t pc : first_pcs_)
      if (consumes(prog_[pc], cp)) return true;
    return false;
  };

  bool matched = false;
  for (size_t pos = from;; ++pos) {
    if (!matched) {
      if (cur->n == 0) {  // nothing in flight: skip to a character that can start a match
        while (pos < n && !may_start(cps[pos])) ++pos;
        if (pos >= n) return false;
      }
      add(*cur, 0, static_cast<uint32_t>(pos), pos);
    }
    if (cur->n == 0) break;
    next->n = 0;
    for (uint32_t i = 0; i < cur->n; ++i) {
      uint32_t pc = cur->pc[i];
      const Inst& in = prog_[pc];
      if (in.op == Inst::kMatch) {
        *ms = cur->start[i];
        *me = static_cast<uint32_t>(pos);
        matched = true;
        break;  // lower-priority threads lose to this match
      }
      if ((in.op == Inst::kChar || in.op == Inst::kClass) && pos < n && consumes(in, cps[pos]))
        add(*next, pc + 1, cur->start[i], pos + 1);
    }
    std::swap(cur, next);
    if (pos >= n) break;
  }
  return matched;
}

void SplitRegex::find_all(const uint32_t* cps, size_t n,
                          std::vector<std::pair<uint32_t, uint32_t>>& out, Scratch& s) const {
  size_t pos = 0;
  uint32_t ms = 0, me = 0;
  while (pos < n && search(cps, n, pos, s, &ms, &me)) {
    out.emplace_back(ms, me);
    pos = me;  // me > ms: the pattern cannot match the empty string
  }
}

}  // namespace dsocr
