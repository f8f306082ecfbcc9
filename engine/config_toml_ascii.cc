// See engine/config_toml_ascii.h (moved out of config_file.cc unchanged).
#include "engine/config_toml_ascii.h"

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mxb {
namespace {

// One UTF-8 sequence at text[i] -> "\uXXXX" / "\UXXXXXXXX"; false when it is not valid UTF-8.
bool AppendEscaped(absl::string_view text, size_t* i, std::string* out) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(text[*i + k]); };
  const unsigned char c = b(0);
  size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
  if (n == 0 || c > 0xF4 || *i + n > text.size()) return false;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return false;
  }
  absl::StrAppend(out, cp > 0xFFFF ? "\\U" : "\\u",
                  absl::Hex(cp, cp > 0xFFFF ? absl::kZeroPad8 : absl::kZeroPad4));
  *i += n;
  return true;
}

}  // namespace

absl::StatusOr<std::string> AsciiForToml(absl::string_view text, const std::string& name) {
  std::string out;
  out.reserve(text.size() + 16);
  size_t line = 1;
  size_t i = 0;
  auto starts = [&](absl::string_view tok) { return text.substr(i, tok.size()) == tok; };
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(name, ":", line, ": ", what));
  };
  // Copies string content from text[i] until the closing `quote` run, escaping as a basic
  // string. `literal`: the source is a literal string (no escapes of its own).
  auto content = [&](char quote, bool multi, bool literal) -> absl::Status {
    while (i < text.size()) {
      const char c = text[i];
      if (!multi && c == '\n') return absl::OkStatus();  // unterminated: toml++ says so
      if (c == quote && (!multi || starts(std::string(3, quote)))) {
        size_t run = 1;
        if (multi) {
          run = 3;
          while (i + run < text.size() && text[i + run] == quote && run < 5) ++run;
          // TOML 1.0: up to two quotes right before the closing delimiter are content.
          for (size_t k = 3; k < run; ++k) out += "\\\"";
        }
        i += run;
        out += multi ? "\"\"\"" : "\"";
        return absl::OkStatus();
      }
      if (static_cast<unsigned char>(c) >= 0x80) {
        if (!AppendEscaped(text, &i, &out)) return error("invalid UTF-8 in a string");
        continue;
      }
      if (c == '\n') ++line;
      if (literal && (c == '\\' || c == '"')) {
        out.push_back('\\');
      } else if (!literal && c == '\\' && i + 1 < text.size()) {
        out.push_back(c);  // an escape: the next octet is copied as it is
        ++i;
        if (static_cast<unsigned char>(text[i]) >= 0x80) return error("invalid escape in a string");
        if (text[i] == '\n') ++line;
      }
      out.push_back(text[i]);
      ++i;
    }
    return absl::OkStatus();
  };
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      out.push_back(c);
      ++i;
    } else if (c == '#') {
      for (; i < text.size() && text[i] != '\n'; ++i) {
        if (static_cast<unsigned char>(text[i]) < 0x80) out.push_back(text[i]);
      }
    } else if (c == '"' || c == '\'') {
      const bool multi = starts(std::string(3, c));
      i += multi ? 3 : 1;
      out += multi ? "\"\"\"" : "\"";
      if (absl::Status s = content(c, multi, c == '\''); !s.ok()) return s;
    } else if (static_cast<unsigned char>(c) >= 0x80) {
      return error(
          "non-ASCII character outside a string (a bare key must be ASCII; quote it: "
          "[domain.\"b\xc3\xbc" "cher.example\"])");
    } else {
      out.push_back(c);
      ++i;
    }
  }
  return out;
}

}  // namespace mxb
