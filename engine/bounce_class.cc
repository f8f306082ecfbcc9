#include "engine/bounce_class.h"

#define TOML_EXCEPTIONS 0
#include <toml++/toml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mxb {
namespace {

constexpr const char* kNames[kBounceClasses] = {
    "invalid-recipient", "mailbox-full", "spam-block", "policy",   "tls",
    "dns",               "rate-limit",   "server-error", "other"};

// "X.1.1", "5.7.*", "X.6.*" -> class digit, subject, detail (-1 = any).
bool ParsePattern(absl::string_view p, char* klass, int* subject, int* detail) {
  std::vector<absl::string_view> parts = absl::StrSplit(p, '.');
  if (parts.size() != 3 || parts[0].size() != 1) return false;
  const char k = absl::ascii_toupper(parts[0][0]);
  if (k != '4' && k != '5' && k != 'X') return false;
  *klass = k;
  int* out[2] = {subject, detail};
  for (int i = 0; i < 2; ++i) {
    if (parts[i + 1] == "*") {
      *out[i] = -1;
    } else if (!absl::SimpleAtoi(parts[i + 1], out[i]) || *out[i] < 0 || *out[i] > 999) {
      return false;
    }
  }
  return true;
}

}  // namespace

const char* ToString(BounceClass c) { return kNames[static_cast<size_t>(c)]; }

bool ParseBounceClass(absl::string_view name, BounceClass* out) {
  for (size_t i = 0; i < kBounceClasses; ++i) {
    if (name == kNames[i]) {
      *out = static_cast<BounceClass>(i);
      return true;
    }
  }
  return false;
}

bool BounceClassifier::CodeRule::Matches(int code, absl::string_view enhanced) const {
  if (reply != 0 && reply != code) return false;
  if (!has_enhanced) return true;
  char k;
  int s, d;
  if (!ParsePattern(enhanced, &k, &s, &d) || k == 'X' || s < 0 || d < 0) return false;
  return (klass == 'X' || klass == k) && (subject < 0 || subject == s) &&
         (detail < 0 || detail == d);
}

absl::Status BounceClassifier::AddRules(absl::string_view text, const std::string& name) {
  // toml++ only ever sees ASCII (engine/config_file.cc says why); reply texts are ASCII anyway.
  size_t line = 1;
  for (char c : text) {
    if (c == '\n') ++line;
    if (static_cast<unsigned char>(c) >= 0x80) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ":", line, ": non-ASCII character (rules match ASCII reply text)"));
    }
  }
  toml::parse_result result = toml::parse(std::string_view(text.data(), text.size()), name);
  if (!result) {
    const toml::parse_error& e = result.error();
    return absl::InvalidArgumentError(absl::StrCat(name, ":", e.source().begin.line, ":",
                                                   e.source().begin.column, ": ",
                                                   std::string(e.description())));
  }
  const toml::table& root = result.table();
  auto error = [&](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", key, ": ", why));
  };
  for (const auto& [k, v] : root) {
    if (k.str() != "code" && k.str() != "text") {
      return error(std::string(k.str()), "unknown key (expected [[code]] or [[text]] rules)");
    }
    if (!v.is_array_of_tables()) return error(std::string(k.str()), "expected [[" + std::string(k.str()) + "]] tables");
  }
  auto klass = [&](const toml::table& t, const std::string& p, BounceClass* out) -> absl::Status {
    std::optional<std::string> c = t["class"].value<std::string>();
    if (!c) return error(p + "class", "required (a string)");
    if (!ParseBounceClass(*c, out)) {
      std::string all;
      for (const char* n : kNames) absl::StrAppend(&all, all.empty() ? "" : ", ", n);
      return error(p + "class", absl::StrCat("expected one of ", all, "; got '", *c, "'"));
    }
    return absl::OkStatus();
  };
  if (const toml::array* a = root["code"].as_array()) {
    for (size_t i = 0; i < a->size(); ++i) {
      const std::string p = absl::StrCat("code[", i, "].");
      const toml::table& t = *(*a)[i].as_table();
      for (const auto& [k, v] : t) {
        if (k.str() != "enhanced" && k.str() != "reply" && k.str() != "class" && k.str() != "after_text") {
          return error(p + std::string(k.str()), "unknown key (enhanced, reply, class, after_text)");
        }
      }
      CodeRule r;
      if (t.contains("enhanced")) {
        std::optional<std::string> e = t["enhanced"].value<std::string>();
        if (!e || !ParsePattern(*e, &r.klass, &r.subject, &r.detail)) {
          return error(p + "enhanced", "expected a code like \"5.1.1\", \"X.1.1\" or \"X.7.*\"");
        }
        r.has_enhanced = true;
      }
      if (t.contains("reply")) {
        std::optional<int64_t> n = t["reply"].value<int64_t>();
        if (!n || *n < 400 || *n > 599) return error(p + "reply", "expected a 4xx or 5xx code");
        r.reply = static_cast<int>(*n);
      }
      if (!r.has_enhanced && r.reply == 0) return error(p.substr(0, p.size() - 1), "needs enhanced or reply");
      if (t.contains("after_text")) {
        std::optional<bool> b = t["after_text"].value<bool>();
        if (!b) return error(p + "after_text", "expected true or false");
        r.after_text = *b;
      }
      if (absl::Status s = klass(t, p, &r.cls); !s.ok()) return s;
      code_.push_back(r);
    }
  }
  if (const toml::array* a = root["text"].as_array()) {
    for (size_t i = 0; i < a->size(); ++i) {
      const std::string p = absl::StrCat("text[", i, "].");
      const toml::table& t = *(*a)[i].as_table();
      for (const auto& [k, v] : t) {
        if (k.str() != "contains" && k.str() != "class") {
          return error(p + std::string(k.str()), "unknown key (contains, class)");
        }
      }
      TextRule r;
      const toml::array* c = t["contains"].as_array();
      if (c == nullptr || c->empty()) return error(p + "contains", "expected a non-empty array of strings");
      for (const toml::node& n : *c) {
        std::optional<std::string> s = n.value<std::string>();
        if (!s || s->empty()) return error(p + "contains", "expected non-empty strings");
        r.needles.push_back(absl::AsciiStrToLower(*s));
      }
      if (absl::Status s = klass(t, p, &r.cls); !s.ok()) return s;
      text_.push_back(std::move(r));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<BounceClassifier> BounceClassifier::Load(const std::string& user_file) {
  BounceClassifier c;
  if (!user_file.empty()) {
    std::ifstream in(user_file, std::ios::binary);
    if (!in) {
      return absl::InvalidArgumentError(
          absl::StrCat(user_file, ": cannot open: ", std::strerror(errno)));
    }
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (absl::Status s = c.AddRules(text, user_file); !s.ok()) return s;
  }
  if (absl::Status s = c.AddRules(BuiltinBounceRules(), "built-in bounce rules"); !s.ok()) {
    return s;
  }
  return c;
}

BounceClass BounceClassifier::Classify(int code, absl::string_view enhanced,
                                       absl::string_view text) const {
  for (const CodeRule& r : code_) {
    if (!r.after_text && r.Matches(code, enhanced)) return r.cls;
  }
  const std::string lower = absl::AsciiStrToLower(text);
  for (const TextRule& r : text_) {
    for (const std::string& n : r.needles) {
      if (absl::StrContains(lower, n)) return r.cls;
    }
  }
  for (const CodeRule& r : code_) {
    if (r.after_text && r.Matches(code, enhanced)) return r.cls;
  }
  return BounceClass::kOther;
}

}  // namespace mxb
