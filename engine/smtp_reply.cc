#include "engine/smtp_reply.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mxb {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A short, printable rendering of a hostile line for error messages.
std::string Excerpt(absl::string_view line) {
  constexpr size_t kMax = 40;
  std::string out;
  for (char c : line.substr(0, kMax)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (line.size() > kMax) out += "...";
  return out;
}

// RFC 3463 §2: class "." subject "." detail, class in {2,4,5}, subject and detail 1..3 digits.
// RFC 2034 §4 puts it at the start of the text, followed by a space (or nothing).
// Returns the code, or "" when the text does not start with one or its class does not match
// the reply's class (a "250 5.1.1 ..." is a confused server, not a bounce).
absl::string_view ExtractEnhanced(absl::string_view text, int reply_class) {
  if (text.size() < 5) return {};
  if (text[0] != '0' + reply_class || (reply_class != 2 && reply_class != 4 && reply_class != 5)) {
    return {};
  }
  if (text[1] != '.') return {};
  size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    size_t digits = 0;
    while (i < text.size() && IsDigit(text[i]) && digits < 4) {
      ++i;
      ++digits;
    }
    if (digits == 0 || digits > 3) return {};
    if (part == 0) {
      if (i >= text.size() || text[i] != '.') return {};
      ++i;
    }
  }
  if (i < text.size() && text[i] != ' ' && text[i] != '\t') return {};
  return text.substr(0, i);
}

}  // namespace

void ReplyParser::Reset() {
  partial_line_.clear();
  current_ = SmtpReply();
  in_reply_ = false;
  failed_ = false;
  lines_in_reply_ = 0;
  stored_octets_ = 0;
}

absl::Status ReplyParser::Fail(absl::Status status) {
  failed_ = true;
  partial_line_.clear();
  return status;
}

absl::Status ReplyParser::Feed(absl::string_view bytes, std::vector<SmtpReply>* out) {
  if (failed_) {
    return absl::FailedPreconditionError("smtp reply parser fed after an error");
  }
  while (!bytes.empty()) {
    const void* nl = std::memchr(bytes.data(), '\n', bytes.size());
    if (nl == nullptr) {
      // No line end yet: keep the fragment. A line that already fills the limit cannot end
      // within it (the LF is still to come).
      if (partial_line_.size() + bytes.size() >= kMaxReplyLineOctets) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            "smtp reply: line longer than ", kMaxReplyLineOctets, " octets: \"",
            Excerpt(partial_line_.empty() ? bytes : absl::string_view(partial_line_)), "\"")));
      }
      partial_line_.append(bytes.data(), bytes.size());
      return absl::OkStatus();
    }
    const size_t take = static_cast<const char*>(nl) - bytes.data() + 1;  // including LF
    if (partial_line_.size() + take > kMaxReplyLineOctets) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "smtp reply: line longer than ", kMaxReplyLineOctets, " octets: \"",
          Excerpt(partial_line_.empty() ? bytes : absl::string_view(partial_line_)), "\"")));
    }
    absl::Status s;
    if (partial_line_.empty()) {
      // Common case: the whole line is in this chunk, no copy.
      s = OnLine(bytes.substr(0, take - 1), out);
    } else {
      partial_line_.append(bytes.data(), take - 1);
      std::string line;
      line.swap(partial_line_);
      s = OnLine(line, out);
    }
    if (!s.ok()) return Fail(std::move(s));
    bytes.remove_prefix(take);
  }
  return absl::OkStatus();
}

absl::Status ReplyParser::OnLine(absl::string_view line, std::vector<SmtpReply>* out) {
  // CRLF is the rule; a bare LF is tolerated (RFC 5321 §4.1.1.4 asks receivers to be careful,
  // and some servers send LF only).
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

  if (line.size() < 3 || !IsDigit(line[0]) || !IsDigit(line[1]) || !IsDigit(line[2])) {
    return absl::InvalidArgumentError(
        absl::StrCat("smtp reply: line does not start with a 3-digit code: \"", Excerpt(line), "\""));
  }
  const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (code < 200 || code > 599) {
    return absl::InvalidArgumentError(
        absl::StrCat("smtp reply: code ", code, " outside 200..599: \"", Excerpt(line), "\""));
  }
  bool last = true;
  absl::string_view text;
  if (line.size() > 3) {
    if (line[3] == '-') {
      last = false;
    } else if (line[3] != ' ') {
      return absl::InvalidArgumentError(absl::StrCat(
          "smtp reply: separator after the code is not ' ' or '-': \"", Excerpt(line), "\""));
    }
    text = line.substr(4);
  }

  if (!in_reply_) {
    in_reply_ = true;
    current_.code = code;
    current_.enhanced = std::string(ExtractEnhanced(text, code / 100));
  } else if (code != current_.code) {
    return absl::InvalidArgumentError(absl::StrCat("smtp reply: continuation code ", code,
                                                   " differs from the first line's ",
                                                   current_.code));
  }
  if (++lines_in_reply_ > kMaxReplyLines) {
    return absl::InvalidArgumentError(
        absl::StrCat("smtp reply: more than ", kMaxReplyLines, " lines in one reply"));
  }
  StoreText(text);

  if (last) {
    out->push_back(std::move(current_));
    current_ = SmtpReply();
    in_reply_ = false;
    lines_in_reply_ = 0;
    stored_octets_ = 0;
  }
  return absl::OkStatus();
}

// Keeps at most kMaxStoredReplyText octets of text. `text` gets the prefix that fits (it is
// for logs); `lines` only gets whole lines, so a cut can never turn "SIZE 10485760" into
// "SIZE 10".
void ReplyParser::StoreText(absl::string_view text) {
  const size_t sep = lines_in_reply_ > 1 ? 1 : 0;  // the '\n' joining it to the previous line
  if (stored_octets_ + sep + text.size() <= kMaxStoredReplyText) {
    if (sep) current_.text += '\n';
    current_.text.append(text.data(), text.size());
    current_.lines.emplace_back(text);
    stored_octets_ += sep + text.size();
    return;
  }
  current_.truncated = true;
  if (stored_octets_ < kMaxStoredReplyText) {
    const size_t room = kMaxStoredReplyText - stored_octets_;
    if (sep) current_.text += '\n';
    current_.text.append(text.data(), std::min(text.size(), room - sep));
  }
  stored_octets_ = kMaxStoredReplyText;
}

EhloCapabilities ParseEhlo(const SmtpReply& reply) {
  EhloCapabilities caps;
  if (reply.klass() != 2) return caps;
  // lines[0] is "domain greeting"; keywords follow, one per line (RFC 5321 §4.1.1.1).
  for (size_t i = 1; i < reply.lines.size(); ++i) {
    absl::string_view line = absl::StripAsciiWhitespace(reply.lines[i]);
    absl::string_view keyword = line;
    absl::string_view params;
    if (size_t sp = line.find_first_of(" \t"); sp != absl::string_view::npos) {
      keyword = line.substr(0, sp);
      params = absl::StripLeadingAsciiWhitespace(line.substr(sp + 1));
    }
    if (absl::EqualsIgnoreCase(keyword, "STARTTLS")) {
      caps.starttls = true;
    } else if (absl::EqualsIgnoreCase(keyword, "PIPELINING")) {
      caps.pipelining = true;
    } else if (absl::EqualsIgnoreCase(keyword, "8BITMIME")) {
      caps.eightbitmime = true;
    } else if (absl::EqualsIgnoreCase(keyword, "SMTPUTF8")) {
      caps.smtputf8 = true;
    } else if (absl::EqualsIgnoreCase(keyword, "ENHANCEDSTATUSCODES")) {
      caps.enhancedstatuscodes = true;
    } else if (absl::EqualsIgnoreCase(keyword, "CHUNKING")) {
      caps.chunking = true;
    } else if (absl::EqualsIgnoreCase(keyword, "REQUIRETLS")) {
      caps.requiretls = true;
    } else if (absl::EqualsIgnoreCase(keyword, "AUTH")) {
      for (absl::string_view m : absl::StrSplit(params, absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
        absl::StrAppend(&caps.auth_mechanisms, caps.auth_mechanisms.empty() ? "" : " ",
                        absl::AsciiStrToUpper(m));
      }
    } else if (absl::EqualsIgnoreCase(keyword, "SIZE")) {
      // RFC 1870 §4: "SIZE" alone or "SIZE <number>"; 0 or no number means no fixed limit.
      caps.size_offered = true;
      uint64_t limit = 0;
      absl::string_view number = params.substr(0, params.find_first_of(" \t"));
      if (!number.empty() && absl::SimpleAtoi(number, &limit)) caps.size = limit;
    }
  }
  return caps;
}

}  // namespace mxb
