// HasTlsRequiredNo (engine/requiretls.h).
#include "engine/requiretls.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace mxb {

bool HasTlsRequiredNo(absl::string_view message) {
  size_t pos = 0;
  while (pos < message.size()) {
    size_t eol = message.find('\n', pos);
    if (eol == absl::string_view::npos) eol = message.size();
    absl::string_view line = message.substr(pos, eol - pos);
    if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
    if (line.empty()) return false;  // end of the header section
    pos = eol + 1;
    absl::string_view name = "TLS-Required:";
    if (!absl::StartsWithIgnoreCase(line, name)) continue;
    std::string value(line.substr(name.size()));
    // RFC 5322 §2.2.3: a folded value continues on lines that start with white space.
    while (pos < message.size() && (message[pos] == ' ' || message[pos] == '\t')) {
      size_t next = message.find('\n', pos);
      if (next == absl::string_view::npos) next = message.size();
      absl::string_view cont = message.substr(pos, next - pos);
      if (absl::EndsWith(cont, "\r")) cont.remove_suffix(1);
      value.append(cont.data(), cont.size());
      pos = next + 1;
    }
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(value), "no")) return true;
  }
  return false;
}

}  // namespace mxb
