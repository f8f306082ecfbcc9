// Envelope parsing and serialisation for spool pickup files; the rules are in envelope.h.
#include "queue/envelope.h"

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mxb {
namespace {

enum class EnvelopeKey {
  kSender,
  kReceiver,
  kEnvid,
  kJob,
  kRequireTls,
  kPriority,
  kAttempts,
  kFirstAttempt,
  kNextAttempt,
};

struct KnownKey {
  absl::string_view name;
  EnvelopeKey key;
};

constexpr KnownKey kKnownKeys[] = {
    {"x-sender", EnvelopeKey::kSender},         {"x-receiver", EnvelopeKey::kReceiver},
    {"x-envid", EnvelopeKey::kEnvid},           {"x-job", EnvelopeKey::kJob},
    {"x-requiretls", EnvelopeKey::kRequireTls}, {"x-priority", EnvelopeKey::kPriority},
    {"x-attempts", EnvelopeKey::kAttempts},     {"x-first-attempt", EnvelopeKey::kFirstAttempt},
    {"x-next-attempt", EnvelopeKey::kNextAttempt},
};

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

absl::string_view TrimWsp(absl::string_view s) {
  while (!s.empty() && IsWsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsWsp(s.back())) s.remove_suffix(1);
  return s;
}

// The key of an envelope line, or nullptr if the line is not one (it then starts the message).
const KnownKey* MatchKey(absl::string_view line, absl::string_view* value) {
  // Cheap reject for the common case of the message's first header line.
  if (line.size() < 2 || (line[0] != 'x' && line[0] != 'X') || line[1] != '-') return nullptr;
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return nullptr;
  absl::string_view name = line.substr(0, colon);
  while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
  for (const KnownKey& k : kKnownKeys) {
    if (absl::EqualsIgnoreCase(name, k.name)) {
      *value = TrimWsp(line.substr(colon + 1));
      return &k;
    }
  }
  return nullptr;
}

// Quotes a value for an error message: escaped, and cut so a megabyte of junk stays readable.
std::string Quote(absl::string_view value) {
  constexpr size_t kMaxShown = 64;
  std::string out = "\"";
  if (value.size() > kMaxShown) {
    absl::StrAppend(&out, absl::CHexEscape(value.substr(0, kMaxShown)), "...\"");
  } else {
    absl::StrAppend(&out, absl::CHexEscape(value), "\"");
  }
  return out;
}

absl::Status LineError(size_t line_no, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", what));
}

// Parses an x-sender/x-receiver value into `out` (no <>, domain lower-cased). `null_ok` allows
// "<>" (the null reverse-path, RFC 5321 §4.5.5).
absl::Status ParseAddress(absl::string_view value, absl::string_view key, bool null_ok,
                          size_t line_no, std::string* out) {
  if (value.empty()) {
    return LineError(line_no, absl::StrCat(key, " is empty",
                                           null_ok ? " (write <> for the null sender)" : ""));
  }
  absl::string_view addr = value;
  if (addr.front() == '<') {
    if (addr.size() < 2 || addr.back() != '>') {
      return LineError(line_no, absl::StrCat(key, " has '<' without closing '>': ", Quote(value)));
    }
    addr = addr.substr(1, addr.size() - 2);
    if (addr.empty()) {
      if (null_ok) {
        out->clear();
        return absl::OkStatus();
      }
      return LineError(line_no, absl::StrCat(key, " is the null address <>"));
    }
  }
  if (addr.size() > kMaxAddressOctets) {
    return LineError(line_no, absl::StrCat(key, " address is ", addr.size(), " octets (max ",
                                           kMaxAddressOctets, "): ", Quote(addr)));
  }
  for (char ch : addr) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == ' ' || c == '\t') {
      return LineError(line_no, absl::StrCat(key, " address contains a space: ", Quote(addr)));
    }
    if (c < 0x20 || c == 0x7f) {
      return LineError(line_no,
                       absl::StrCat(key, " address contains a control character: ", Quote(addr)));
    }
    if (c == '<' || c == '>') {
      return LineError(line_no, absl::StrCat(key, " address contains '<' or '>': ", Quote(addr)));
    }
  }
  const size_t at = addr.rfind('@');
  if (at == absl::string_view::npos) {
    return LineError(line_no, absl::StrCat(key, " without '@': ", Quote(addr)));
  }
  if (at == 0) {
    return LineError(line_no, absl::StrCat(key, " has an empty local part: ", Quote(addr)));
  }
  const absl::string_view domain = addr.substr(at + 1);
  if (domain.empty()) {
    return LineError(line_no, absl::StrCat(key, " has an empty domain: ", Quote(addr)));
  }
  // Domain literals ("[192.0.2.1]", RFC 5321 §4.1.3) are passed through; names must not have
  // empty labels.
  if (domain.front() != '[' &&
      (domain.front() == '.' || domain.back() == '.' || absl::StrContains(domain, ".."))) {
    return LineError(line_no, absl::StrCat(key, " has an empty domain label: ", Quote(addr)));
  }
  out->assign(addr.data(), at + 1);
  out->append(absl::AsciiStrToLower(domain));
  return absl::OkStatus();
}

// A decimal integer in [0, max] (retry-state fields); a leading '+' or '-' is rejected. The
// bound keeps the engine's arithmetic on them defined: recovery and every deferral add one to
// x-attempts (4294967295 would wrap to 0, and the generation with it), and times are added to
// x-first-attempt.
template <typename Int>
absl::Status ParseCount(absl::string_view value, absl::string_view key, size_t line_no, Int max,
                        Int* out) {
  if (value.empty() || value.front() < '0' || value.front() > '9' ||
      !absl::SimpleAtoi(value, out)) {
    return LineError(line_no, absl::StrCat(key, " is not a decimal integer >= 0: ", Quote(value)));
  }
  if (*out > max) {
    return LineError(line_no, absl::StrCat(key, " out of range (at most ", max, "): ", Quote(value)));
  }
  return absl::OkStatus();
}

absl::Status Duplicate(size_t line_no, absl::string_view key, size_t first_line) {
  return LineError(line_no, absl::StrCat("duplicate ", key, " (first on line ", first_line, ")"));
}

}  // namespace

absl::StatusOr<Envelope> ParseEnvelope(absl::string_view file) {
  if (file.empty()) return LineError(1, "file is empty");
  Envelope env;
  // Line where each single-valued key was seen (0 = not yet), for duplicate errors.
  size_t sender_line = 0, envid_line = 0, job_line = 0, tls_line = 0, priority_line = 0;
  size_t attempts_line = 0, first_attempt_line = 0, next_attempt_line = 0;
  size_t pos = 0;
  size_t line_no = 0;
  bool message_found = false;
  std::string addr;
  while (pos < file.size()) {
    ++line_no;
    const size_t lf = file.find('\n', pos);
    const size_t line_end = lf == absl::string_view::npos ? file.size() : lf;
    absl::string_view line = file.substr(pos, line_end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    absl::string_view value;
    const KnownKey* key = MatchKey(line, &value);
    if (key == nullptr) {
      message_found = true;
      break;
    }
    const size_t next = lf == absl::string_view::npos ? file.size() : lf + 1;
    if (next > kMaxEnvelopeOctets) {
      return LineError(line_no, absl::StrCat("envelope exceeds ", kMaxEnvelopeOctets, " octets"));
    }
    switch (key->key) {
      case EnvelopeKey::kSender:
        if (sender_line != 0) return Duplicate(line_no, key->name, sender_line);
        sender_line = line_no;
        if (absl::Status s = ParseAddress(value, key->name, /*null_ok=*/true, line_no, &addr);
            !s.ok()) {
          return s;
        }
        env.sender = addr;
        break;
      case EnvelopeKey::kReceiver:
        if (env.recipients.size() == kMaxRecipients) {
          return LineError(line_no, absl::StrCat("more than ", kMaxRecipients, " x-receiver lines"));
        }
        if (absl::Status s = ParseAddress(value, key->name, /*null_ok=*/false, line_no, &addr);
            !s.ok()) {
          return s;
        }
        env.recipients.push_back(addr);
        break;
      case EnvelopeKey::kEnvid:
        if (envid_line != 0) return Duplicate(line_no, key->name, envid_line);
        envid_line = line_no;
        if (value.empty() || value.size() > kMaxEnvidOctets) {
          return LineError(line_no, absl::StrCat("x-envid must be 1..", kMaxEnvidOctets,
                                                 " octets, got ", value.size()));
        }
        // RFC 3461 §4.4: ENVID is printable US-ASCII (it is xtext-encoded on the wire).
        for (char ch : value) {
          if (ch < 0x21 || ch > 0x7e) {
            return LineError(line_no,
                             absl::StrCat("x-envid is not printable US-ASCII: ", Quote(value)));
          }
        }
        env.envid = std::string(value);
        break;
      case EnvelopeKey::kJob:
        if (job_line != 0) return Duplicate(line_no, key->name, job_line);
        job_line = line_no;
        if (value.empty() || value.size() > kMaxJobOctets) {
          return LineError(line_no, absl::StrCat("x-job must be 1..", kMaxJobOctets,
                                                 " octets, got ", value.size()));
        }
        for (char ch : value) {
          const auto c = static_cast<unsigned char>(ch);
          if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return LineError(line_no,
                             absl::StrCat("x-job contains a control character: ", Quote(value)));
          }
        }
        env.job = std::string(value);
        break;
      case EnvelopeKey::kRequireTls:
        if (tls_line != 0) return Duplicate(line_no, key->name, tls_line);
        tls_line = line_no;
        if (absl::EqualsIgnoreCase(value, "yes")) {
          env.require_tls = true;
        } else if (absl::EqualsIgnoreCase(value, "no")) {
          env.require_tls = false;
        } else {
          return LineError(line_no,
                           absl::StrCat("x-requiretls must be yes or no, got ", Quote(value)));
        }
        break;
      case EnvelopeKey::kPriority:
        if (priority_line != 0) return Duplicate(line_no, key->name, priority_line);
        priority_line = line_no;
        if (!absl::SimpleAtoi(value, &env.priority)) {
          return LineError(line_no,
                           absl::StrCat("x-priority is not a decimal integer: ", Quote(value)));
        }
        break;
      case EnvelopeKey::kAttempts:
        if (attempts_line != 0) return Duplicate(line_no, key->name, attempts_line);
        attempts_line = line_no;
        if (absl::Status s = ParseCount(value, key->name, line_no, kMaxAttempts, &env.attempts); !s.ok()) {
          return s;
        }
        break;
      case EnvelopeKey::kFirstAttempt:
        if (first_attempt_line != 0) return Duplicate(line_no, key->name, first_attempt_line);
        first_attempt_line = line_no;
        if (absl::Status s = ParseCount(value, key->name, line_no, kMaxUnixSeconds, &env.first_attempt); !s.ok()) {
          return s;
        }
        break;
      case EnvelopeKey::kNextAttempt:
        if (next_attempt_line != 0) return Duplicate(line_no, key->name, next_attempt_line);
        next_attempt_line = line_no;
        if (absl::Status s = ParseCount(value, key->name, line_no, kMaxUnixSeconds, &env.next_attempt); !s.ok()) {
          return s;
        }
        break;
    }
    pos = next;
  }
  if (sender_line == 0) {
    return LineError(line_no, "no x-sender line before the message");
  }
  if (env.recipients.empty()) {
    return LineError(line_no, "no x-receiver line before the message");
  }
  if (!message_found) {
    return LineError(line_no, "empty message after the envelope");
  }
  if (file.find_first_not_of("\r\n", pos) == absl::string_view::npos) {
    return LineError(line_no, "message after the envelope has only empty lines");
  }
  env.body_offset = pos;
  return env;
}

std::string DomainOf(absl::string_view address) {
  const size_t at = address.rfind('@');
  if (at == absl::string_view::npos) return std::string();
  return absl::AsciiStrToLower(address.substr(at + 1));
}

std::string SerializeEnvelope(const Envelope& env, absl::string_view body) {
  const size_t first_lf = body.find('\n');
  const absl::string_view eol =
      first_lf != absl::string_view::npos && first_lf > 0 && body[first_lf - 1] == '\r' ? "\r\n"
                                                                                         : "\n";
  size_t size = body.size() + env.sender.size() + 20 + env.envid.size() + env.job.size() + 64;
  for (const std::string& r : env.recipients) size += r.size() + 20;
  std::string out;
  out.reserve(size);
  absl::StrAppend(&out, "x-sender: <", env.sender, ">", eol);
  for (const std::string& r : env.recipients) absl::StrAppend(&out, "x-receiver: <", r, ">", eol);
  if (!env.envid.empty()) absl::StrAppend(&out, "x-envid: ", env.envid, eol);
  if (!env.job.empty()) absl::StrAppend(&out, "x-job: ", env.job, eol);
  if (env.require_tls) absl::StrAppend(&out, "x-requiretls: yes", eol);
  if (env.priority != 0) absl::StrAppend(&out, "x-priority: ", env.priority, eol);
  if (env.attempts != 0) absl::StrAppend(&out, "x-attempts: ", env.attempts, eol);
  if (env.first_attempt != 0) absl::StrAppend(&out, "x-first-attempt: ", env.first_attempt, eol);
  if (env.next_attempt != 0) absl::StrAppend(&out, "x-next-attempt: ", env.next_attempt, eol);
  out.append(body.data(), body.size());
  return out;
}

}  // namespace mxb
