// JsonLine: appends one flat JSON object (string, integer and boolean members, in call order) to
// a caller-owned buffer — the accounting log's record writer (engine/accounting_log.h).
//
// Why not nlohmann::json here: building an ordered_json object per record (a heap node and a
// std::string copy per member, then dump()) was ~3% of the scanner thread's CPU in scenario a
// (bench/README.md "Scanner"); this writes straight into the log's buffer. The output is byte
// for byte what `ordered_json::dump(-1, ' ', false, error_handler_t::replace)` printed, so the
// log format did not change: compact, UTF-8 kept as is, '"' '\\' and the control characters
// escaped (\b \f \n \r \t, else \u00xx in lower-case hex), and each ill-formed UTF-8 subsequence
// (a byte that cannot start a sequence, or the longest prefix of a sequence that cannot be
// completed — Unicode's "maximal subpart", which is what nlohmann's decoder rejects at) replaced
// by one U+FFFD: server text is untrusted and must never break the line or the record.
// tests/engine/json_line_test.cc compares it with nlohmann's dump and parse on such input.
//
// Any thread (no state beyond the buffer).
//
//   std::string line;
//   JsonLine j(&line);
//   j.Str("status", "delivered");
//   j.Int("code", 250);
//   j.Bool("dnssec", false);
//   j.End();  // "}\n"
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace mxb {

// `s` as a JSON string literal (quotes included), appended to `out`.
void AppendJsonString(absl::string_view s, std::string* out);

class JsonLine {
 public:
  explicit JsonLine(std::string* out) : out_(out) { out_->push_back('{'); }
  // `key` is a literal of ours: written without escaping.
  void Str(absl::string_view key, absl::string_view value) {
    Key(key);
    AppendJsonString(value, out_);
  }
  void Int(absl::string_view key, int64_t value);
  void Bool(absl::string_view key, bool value) {
    Key(key);
    out_->append(value ? "true" : "false");
  }
  // Closes the object and ends the line.
  void End() { out_->append("}\n"); }

 private:
  void Key(absl::string_view key) {
    if (!first_) out_->push_back(',');
    first_ = false;
    out_->push_back('"');
    out_->append(key.data(), key.size());
    out_->append("\":");
  }
  std::string* out_;
  bool first_ = true;
};

}  // namespace mxb
