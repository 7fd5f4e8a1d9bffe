// Validated safetensors reader. Every number in the header is checked against the file before it
// is used to index memory: see the order of checks in SafetensorsFile::parse.
#include "loader/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>
#include <utility>

namespace dsocr {

namespace {

using json = nlohmann::json;

struct DTypeEntry {
  DType type;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::BF16, "BF16", 2}, {DType::F16, "F16", 2}, {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},   {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::I16, "I16", 2},   {DType::U16, "U16", 2}, {DType::I32, "I32", 4},
    {DType::U32, "U32", 4},   {DType::I64, "I64", 8}, {DType::U64, "U64", 8},
    {DType::BOOL, "BOOL", 1},
};

// Text from the file as it appears in a message: clipped so a hostile 50 MB key cannot flood the
// message, control bytes escaped so the message stays one line.
std::string clip_text(std::string_view s, size_t max) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      out += strfmt("\\x%02x", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max) out += strfmt("...(%zu bytes)", s.size());
  return out;
}

std::string quote_name(std::string_view s) {
  std::string out = "\"";
  out += clip_text(s, 160);
  out += '"';
  return out;
}

const char* json_type(const json& j) {
  if (j.is_number_float()) return "a non-integer number";
  if (j.is_number_integer() && !j.is_number_unsigned()) return "a negative integer";
  return j.type_name();
}

// A short rendering of a JSON value for messages.
std::string short_dump(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// SAX pass that rejects what the DOM parser would accept silently: duplicate keys and absurd
// nesting. It builds nothing; parse_json_strict parses again into a DOM once this pass is clean.
class StrictJsonChecker {
 public:
  explicit StrictJsonChecker(int max_depth) : max_depth_(max_depth) {}

  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const json::string_t&) { return true; }
  bool string(json::string_t&) { return true; }
  bool binary(json::binary_t&) { return true; }
  bool start_object(std::size_t) {
    if (!push()) return false;
    keys_.emplace_back();
    return true;
  }
  bool key(json::string_t& k) {
    if (!keys_.back().insert(k).second) {
      error_ = "duplicate key " + quote_name(k);
      if (opened_under_.size() > 1) error_ += " inside " + quote_name(opened_under_.back());
      return false;
    }
    last_key_ = k;
    return true;
  }
  bool end_object() {
    keys_.pop_back();
    opened_under_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    if (!push()) return false;
    keys_.emplace_back();  // unused, keeps the stacks in step
    return true;
  }
  bool end_array() { return end_object(); }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) {
    std::string what = ex.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 5: ..." -> "parse error
    // at..."
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    error_ = strfmt("invalid JSON (byte %zu): %s", position, clip_text(what, 300).c_str());
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  bool push() {
    if (static_cast<int>(opened_under_.size()) >= max_depth_) {
      error_ = strfmt("JSON nested deeper than %d levels", max_depth_);
      return false;
    }
    opened_under_.push_back(last_key_);
    return true;
  }

  int max_depth_;
  std::vector<std::unordered_set<std::string>> keys_;  // per open container
  std::vector<std::string> opened_under_;              // key each open container was opened under
  std::string last_key_;
  std::string error_;
};

Status err(const std::string& file, const std::string& msg) {
  return Status::Error(file + ": " + msg);
}

// numel * elem_size with overflow checks; false on overflow or a negative dim.
bool checked_nbytes(const std::vector<int64_t>& shape, size_t elem_size, uint64_t* out) {
  uint64_t n = elem_size;
  for (int64_t d : shape) {
    if (d < 0) return false;
    uint64_t ud = static_cast<uint64_t>(d);
    if (ud != 0 && n > std::numeric_limits<uint64_t>::max() / ud) return false;
    n *= ud;
  }
  // numel() returns int64_t: keep the element count representable too.
  if (elem_size != 0 && n / elem_size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return false;
  *out = n;
  return true;
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string known_dtypes() {
  std::string s;
  for (const auto& e : kDTypes) {
    if (!s.empty()) s += ", ";
    s += e.name;
  }
  return s;
}

// One header entry {"dtype", "shape", "data_offsets"} -> TensorInfo (offset still relative).
Status parse_entry(const std::string& file, const std::string& name, const json& e,
                   uint64_t data_size, TensorInfo* t, uint64_t* begin_out) {
  const std::string where = "tensor " + quote_name(name);
  if (name.empty()) return err(file, "a tensor has an empty name; the header is corrupt");
  if (!e.is_object())
    return err(file, strfmt("%s: entry is %s, expected an object {dtype, shape, data_offsets}",
                            where.c_str(), json_type(e)));
  t->name = name;

  auto it = e.find("dtype");
  if (it == e.end()) return err(file, where + ": missing \"dtype\"");
  if (!it->is_string())
    return err(file, strfmt("%s: dtype is %s, expected a string", where.c_str(), json_type(*it)));
  auto dt = parse_dtype(it->get_ref<const std::string&>());
  if (!dt.ok()) return err(file, where + ": " + dt.message());
  t->dtype = *dt;

  it = e.find("shape");
  if (it == e.end()) return err(file, where + ": missing \"shape\"");
  if (!it->is_array())
    return err(file, strfmt("%s: shape is %s, expected an array of non-negative integers",
                            where.c_str(), json_type(*it)));
  t->shape.clear();
  t->shape.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& d = (*it)[i];
    if (!d.is_number_unsigned())
      return err(file, strfmt("%s: shape[%zu] is %s (%s), expected a non-negative integer",
                              where.c_str(), i, json_type(d), short_dump(d).c_str()));
    uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return err(file, strfmt("%s: shape[%zu] = %llu is larger than 2^63-1", where.c_str(), i,
                              static_cast<unsigned long long>(v)));
    t->shape.push_back(static_cast<int64_t>(v));
  }

  it = e.find("data_offsets");
  if (it == e.end()) return err(file, where + ": missing \"data_offsets\"");
  if (!it->is_array() || it->size() != 2 || !(*it)[0].is_number_unsigned() ||
      !(*it)[1].is_number_unsigned())
    return err(file, strfmt("%s: data_offsets is %s, expected [begin, end] (two unsigned integers)",
                            where.c_str(), short_dump(*it).c_str()));
  uint64_t begin = (*it)[0].get<uint64_t>(), end = (*it)[1].get<uint64_t>();
  if (begin > end)
    return err(
        file, strfmt("%s: data_offsets [%llu,%llu] has begin > end", where.c_str(),
                     static_cast<unsigned long long>(begin), static_cast<unsigned long long>(end)));
  if (end > data_size)
    return err(file, strfmt("%s: data_offsets [%llu,%llu] end past the data region (%llu bytes); "
                            "the file is truncated or the header is corrupt",
                            where.c_str(), static_cast<unsigned long long>(begin),
                            static_cast<unsigned long long>(end),
                            static_cast<unsigned long long>(data_size)));
  uint64_t nbytes = 0;
  if (!checked_nbytes(t->shape, dtype_size(t->dtype), &nbytes))
    return err(file, strfmt("%s: shape %s x %s overflows 64-bit byte count", where.c_str(),
                            shape_to_string(t->shape).c_str(), dtype_name(t->dtype)));
  if (nbytes != end - begin)
    return err(
        file,
        strfmt("%s: shape %s x %s needs %llu bytes, data_offsets [%llu,%llu] hold %llu",
               where.c_str(), shape_to_string(t->shape).c_str(), dtype_name(t->dtype),
               static_cast<unsigned long long>(nbytes), static_cast<unsigned long long>(begin),
               static_cast<unsigned long long>(end), static_cast<unsigned long long>(end - begin)));
  t->nbytes = nbytes;
  *begin_out = begin;
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// dtype helpers

size_t dtype_size(DType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e.size;
  return 0;
}

const char* dtype_name(DType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e.name;
  return "?";
}

Expected<DType> parse_dtype(std::string_view name) {
  for (const auto& e : kDTypes)
    if (name == e.name) return e.type;
  return Status::Error("unknown dtype " + quote_name(name) + " (known: " + known_dtypes() + ")");
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorInfo::shape_str() const {
  return shape_to_string(shape);
}

// ---------------------------------------------------------------------------------------------
// JSON

Expected<json> parse_json_strict(std::string_view text, const std::string& what, int max_depth) {
  try {
    StrictJsonChecker checker(max_depth);
    bool ok = json::sax_parse(text.begin(), text.end(), &checker);
    if (!ok || !checker.error().empty()) {
      std::string e = checker.error().empty() ? "invalid JSON" : checker.error();
      return Status::Error(what + ": " + e);
    }
    json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return Status::Error(what + ": invalid JSON");
    return j;
  } catch (const std::exception& ex) {
    return Status::Error(what + ": cannot parse JSON: " + ex.what());
  }
}

// ---------------------------------------------------------------------------------------------
// MappedFile

Expected<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) return Status::Error(path + ": no such file");
    return Status::Error(path + ": cannot open: " + std::strerror(e));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return Status::Error(path + ": cannot stat: " + std::strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Status::Error(path + ": is a directory, expected a file");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::Error(path + ": not a regular file");
  }
  if (st.st_size <= 0) {
    ::close(fd);
    return Status::Error(path + ": file is empty");
  }
  size_t size = static_cast<size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  ::close(fd);
  if (p == MAP_FAILED)
    return Status::Error(
        strfmt("%s: cannot map %zu bytes: %s", path.c_str(), size, std::strerror(e)));
  MappedFile m;
  m.path_ = path;
  m.data_ = static_cast<const uint8_t*>(p);
  m.size_ = size;
  return m;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)),
      data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

Expected<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  DSOCR_ASSIGN_OR_RETURN(MappedFile m, MappedFile::open(path));
  auto map = std::make_shared<MappedFile>(std::move(m));
  DSOCR_ASSIGN_OR_RETURN(SafetensorsFile f,
                         parse(std::span<const uint8_t>(map->data(), map->size()), path));
  f.map_ = std::move(map);
  return f;
}

Expected<SafetensorsFile> SafetensorsFile::parse(std::span<const uint8_t> bytes,
                                                 const std::string& display_name) {
  const std::string& file = display_name;
  const uint64_t size = bytes.size();
  if (size < 8)
    return err(file, strfmt("file is %llu bytes, too short for the 8-byte header length; the file "
                            "is truncated or not a safetensors file",
                            static_cast<unsigned long long>(size)));
  const uint64_t n = read_le64(bytes.data());
  if (n > kMaxHeaderBytes)
    return err(file, strfmt("header length %llu exceeds the %llu-byte limit; not a safetensors "
                            "file, or corrupt",
                            static_cast<unsigned long long>(n),
                            static_cast<unsigned long long>(kMaxHeaderBytes)));
  if (n > size - 8)
    return err(file,
               strfmt("header length %llu runs past the end of the file (%llu bytes); the "
                      "file is truncated",
                      static_cast<unsigned long long>(n), static_cast<unsigned long long>(size)));
  const uint64_t data_begin = 8 + n;
  const uint64_t data_size = size - data_begin;

  std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), n);
  // Depth 3 is all the format uses (header -> entry -> shape); 4 leaves room for better messages.
  DSOCR_ASSIGN_OR_RETURN(json header, parse_json_strict(text, file + ": header", 4));
  if (!header.is_object())
    return err(file, strfmt("header is %s, expected a JSON object", json_type(header)));

  SafetensorsFile f;
  f.base_ = bytes.data();
  f.size_ = size;
  f.data_begin_ = data_begin;
  f.name_ = file;

  struct Placed {
    uint64_t begin;
    TensorInfo info;
  };
  std::vector<Placed> placed;
  placed.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    if (key == "__metadata__") {
      if (!it->is_object())
        return err(file, strfmt("__metadata__ is %s, expected an object of string values",
                                json_type(*it)));
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string())
          return err(file, strfmt("__metadata__ key %s is %s, expected a string",
                                  quote_name(m.key()).c_str(), json_type(*m)));
        f.metadata_.emplace(m.key(), m->get<std::string>());
      }
      continue;
    }
    Placed p{};
    DSOCR_TRY(parse_entry(file, key, *it, data_size, &p.info, &p.begin));
    placed.push_back(std::move(p));
  }

  // Coverage: sorted by begin, each tensor starts where the previous one ended, the last ends at
  // the end of the file. This rejects overlaps, holes and trailing bytes in one pass.
  std::stable_sort(placed.begin(), placed.end(), [](const Placed& a, const Placed& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.info.nbytes < b.info.nbytes;
  });
  uint64_t pos = 0;
  const std::string* prev = nullptr;
  for (const Placed& p : placed) {
    if (p.begin != pos) {
      const std::string who =
          prev ? "after tensor " + quote_name(*prev) : std::string("at the start");
      if (p.begin < pos)
        return err(file,
                   strfmt("tensor %s: data_offsets [%llu,%llu] overlap tensor %s, which "
                          "ends at %llu",
                          quote_name(p.info.name).c_str(), static_cast<unsigned long long>(p.begin),
                          static_cast<unsigned long long>(p.begin + p.info.nbytes),
                          quote_name(prev ? *prev : std::string()).c_str(),
                          static_cast<unsigned long long>(pos)));
      return err(file,
                 strfmt("hole of %llu bytes in the data region %s (bytes [%llu,%llu]) "
                        "before tensor %s",
                        static_cast<unsigned long long>(p.begin - pos), who.c_str(),
                        static_cast<unsigned long long>(pos),
                        static_cast<unsigned long long>(p.begin), quote_name(p.info.name).c_str()));
    }
    pos = p.begin + p.info.nbytes;
    prev = &p.info.name;
  }
  if (pos != data_size)
    return err(file, strfmt("the tensors cover %llu bytes of data but the data region holds %llu "
                            "(%llu trailing bytes); the file is corrupt or was appended to",
                            static_cast<unsigned long long>(pos),
                            static_cast<unsigned long long>(data_size),
                            static_cast<unsigned long long>(data_size - pos)));

  f.tensors_.reserve(placed.size());
  for (Placed& p : placed) {
    p.info.offset = data_begin + p.begin;
    p.info.shard = 0;
    f.index_.emplace(p.info.name, f.tensors_.size());
    f.tensors_.push_back(std::move(p.info));
  }
  return f;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// ---------------------------------------------------------------------------------------------
// Checkpoint

namespace {

constexpr const char* kModelHint =
    "pass --model the directory holding model-00001-of-000001.safetensors and config.json";
constexpr const char* kIndexName = "model.safetensors.index.json";

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A shard name from the index must be a plain file name in the checkpoint directory.
bool is_plain_file_name(const std::string& s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s)
    if (c == '/' || c == '\\' || c == '\0') return false;
  return true;
}

Expected<std::string> read_small_file(const std::string& path, uint64_t limit) {
  DSOCR_ASSIGN_OR_RETURN(MappedFile m, MappedFile::open(path));
  if (m.size() > limit)
    return Status::Error(strfmt("%s: %zu bytes, larger than the %llu-byte limit", path.c_str(),
                                m.size(), static_cast<unsigned long long>(limit)));
  return std::string(reinterpret_cast<const char*>(m.data()), m.size());
}

}  // namespace

Expected<Checkpoint> Checkpoint::open_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::status(dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory)
    return Status::Error(dir + ": cannot access: " + ec.message() + "; " + kModelHint);
  if (ec || !fs::exists(st)) return Status::Error(dir + ": no such directory; " + kModelHint);
  if (!fs::is_directory(st)) return Status::Error(dir + ": not a directory; " + kModelHint);

  std::vector<std::string> found;  // *.safetensors in the directory
  bool has_index = false;
  fs::directory_iterator di(dir, ec), end;
  if (ec) return Status::Error(dir + ": cannot list directory: " + ec.message());
  for (; di != end; di.increment(ec)) {
    if (ec) return Status::Error(dir + ": cannot list directory: " + ec.message());
    std::string name = di->path().filename().string();
    if (name == kIndexName) has_index = true;
    if (ends_with(name, ".safetensors")) found.push_back(name);
  }
  std::sort(found.begin(), found.end());

  Checkpoint c;
  c.dir_ = dir;
  const fs::path base(dir);

  if (!has_index) {
    if (found.empty())
      return Status::Error(dir + ": no .safetensors file and no " + kIndexName + "; " + kModelHint);
    if (found.size() > 1) {
      std::string list;
      for (const auto& n : found) list += (list.empty() ? "" : ", ") + n;
      return Status::Error(
          strfmt("%s: %zu .safetensors files (%s) but no %s saying which tensor "
                 "lives where; keep one file or add the index",
                 dir.c_str(), found.size(), list.c_str(), kIndexName));
    }
    DSOCR_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open((base / found[0]).string()));
    c.files_.push_back(std::move(f));
  } else {
    const std::string index_path = (base / kIndexName).string();
    DSOCR_ASSIGN_OR_RETURN(std::string text, read_small_file(index_path, kMaxHeaderBytes));
    DSOCR_ASSIGN_OR_RETURN(json idx, parse_json_strict(text, index_path, 8));
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      return Status::Error(index_path + ": expected {\"weight_map\": {tensor: file}}");
    const json& wm = idx["weight_map"];
    std::vector<std::string> shards;  // distinct, sorted
    for (auto it = wm.begin(); it != wm.end(); ++it) {
      if (!it->is_string())
        return Status::Error(strfmt("%s: weight_map[%s] is %s, expected a file name",
                                    index_path.c_str(), quote_name(it.key()).c_str(),
                                    json_type(*it)));
      const std::string& shard = it->get_ref<const std::string&>();
      if (!is_plain_file_name(shard))
        return Status::Error(
            strfmt("%s: weight_map[%s] = %s is not a plain file name inside the "
                   "checkpoint directory (no paths allowed)",
                   index_path.c_str(), quote_name(it.key()).c_str(), quote_name(shard).c_str()));
      shards.push_back(shard);
    }
    std::sort(shards.begin(), shards.end());
    shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
    if (shards.empty()) return Status::Error(index_path + ": weight_map is empty; " + kModelHint);
    for (const auto& s : shards) {
      const std::string p = (base / s).string();
      if (!fs::exists(fs::path(p), ec))
        return Status::Error(
            strfmt("%s: names shard %s, which is missing from %s; download it "
                   "or fix the index",
                   index_path.c_str(), quote_name(s).c_str(), dir.c_str()));
      DSOCR_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(p));
      c.files_.push_back(std::move(f));
    }
    // Every indexed tensor in the shard the index names.
    for (auto it = wm.begin(); it != wm.end(); ++it) {
      const std::string& shard = it->get_ref<const std::string&>();
      size_t k = std::lower_bound(shards.begin(), shards.end(), shard) - shards.begin();
      if (!c.files_[k].find(it.key()))
        return Status::Error(
            strfmt("%s: tensor %s is indexed in %s but that shard does not hold "
                   "it",
                   index_path.c_str(), quote_name(it.key()).c_str(), quote_name(shard).c_str()));
    }
    // Every shard tensor indexed, and indexed in this shard.
    for (size_t k = 0; k < c.files_.size(); ++k) {
      for (const TensorInfo& t : c.files_[k].tensors()) {
        auto w = wm.find(t.name);
        if (w == wm.end())
          return Status::Error(strfmt("%s: holds tensor %s, which %s does not list",
                                      c.files_[k].path().c_str(), quote_name(t.name).c_str(),
                                      index_path.c_str()));
        if (w->get_ref<const std::string&>() != shards[k])
          return Status::Error(strfmt("%s: tensor %s is in both %s and %s (the index names %s)",
                                      index_path.c_str(), quote_name(t.name).c_str(),
                                      shards[k].c_str(), w->get_ref<const std::string&>().c_str(),
                                      w->get_ref<const std::string&>().c_str()));
      }
    }
  }

  for (size_t k = 0; k < c.files_.size(); ++k) {
    for (const TensorInfo& t : c.files_[k].tensors()) {
      TensorInfo ti = t;
      ti.shard = static_cast<int>(k);
      auto [pos, inserted] = c.index_.emplace(ti.name, c.all_.size());
      if (!inserted)
        return Status::Error(strfmt("tensor %s is in both %s and %s", quote_name(ti.name).c_str(),
                                    c.files_[c.all_[pos->second].shard].path().c_str(),
                                    c.files_[k].path().c_str()));
      c.all_.push_back(std::move(ti));
    }
  }
  return c;
}

const TensorInfo* Checkpoint::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &all_[it->second];
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& t : all_) n += t.nbytes;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

Expected<std::string> build_header_impl(std::vector<TensorInfo>& tensors,
                                        const std::map<std::string, std::string>& metadata) {
  std::unordered_set<std::string> seen;
  std::string body = "{";
  bool first = true;
  auto sep = [&] {
    if (!first) body += ",";
    first = false;
  };
  if (!metadata.empty()) {
    sep();
    body += "\"__metadata__\":{";
    bool mfirst = true;
    for (const auto& [k, v] : metadata) {
      if (!mfirst) body += ",";
      mfirst = false;
      body += json(k).dump(-1, ' ', false, json::error_handler_t::strict) + ":" +
              json(v).dump(-1, ' ', false, json::error_handler_t::strict);
    }
    body += "}";
  }
  uint64_t pos = 0;
  for (const TensorInfo& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      return Status::Error("build_safetensors_header: invalid tensor name " + quote_name(t.name));
    if (!seen.insert(t.name).second)
      return Status::Error("build_safetensors_header: duplicate tensor " + quote_name(t.name));
    uint64_t nbytes = 0;
    if (!checked_nbytes(t.shape, dtype_size(t.dtype), &nbytes))
      return Status::Error(
          strfmt("build_safetensors_header: tensor %s: shape %s is negative or "
                 "overflows",
                 quote_name(t.name).c_str(), t.shape_str().c_str()));
    if (t.nbytes != 0 && t.nbytes != nbytes)
      return Status::Error(strfmt(
          "build_safetensors_header: tensor %s: nbytes %llu, but shape %s "
          "x %s = %llu",
          quote_name(t.name).c_str(), static_cast<unsigned long long>(t.nbytes),
          t.shape_str().c_str(), dtype_name(t.dtype), static_cast<unsigned long long>(nbytes)));
    if (pos + nbytes < pos) return Status::Error("build_safetensors_header: total size overflows");
    sep();
    body += json(t.name).dump(-1, ' ', false, json::error_handler_t::strict);
    body += strfmt(":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%llu,%llu]}",
                   dtype_name(t.dtype), t.shape_str().c_str(), static_cast<unsigned long long>(pos),
                   static_cast<unsigned long long>(pos + nbytes));
    pos += nbytes;
  }
  body += "}";
  while (body.size() % 8 != 0) body += ' ';
  uint64_t n = body.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += body;
  const uint64_t data_begin = out.size();
  pos = 0;
  for (TensorInfo& t : tensors) {
    uint64_t nbytes = 0;
    checked_nbytes(t.shape, dtype_size(t.dtype), &nbytes);
    t.nbytes = nbytes;
    t.offset = data_begin + pos;
    pos += nbytes;
  }
  return out;
}

}  // namespace

Expected<std::string> try_build_safetensors_header(
    std::vector<TensorInfo>& tensors, const std::map<std::string, std::string>& metadata) {
  try {
    return build_header_impl(tensors, metadata);
  } catch (const std::exception& e) {  // a name that is not valid UTF-8 (json dump is strict)
    return Status::Error(std::string("build_safetensors_header: ") + e.what());
  }
}

std::string build_safetensors_header(std::vector<TensorInfo>& tensors,
                                     const std::map<std::string, std::string>& metadata) {
  auto r = try_build_safetensors_header(tensors, metadata);
  return r.ok() ? std::move(r).value() : std::string();
}

}  // namespace dsocr
