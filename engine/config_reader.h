// TomlReader: the typed, range-checked getters every table of the config file is read with
// (engine/config_file.cc, engine/config_dkim.cc). Each error is one line naming the file and the
// key: "mxburst.toml: limits.max_connections: expected an integer in [1, 100000]".
//
// Start-up only (main thread). Example:
//   mxb::TomlReader r("mxburst.toml");
//   std::string spool;
//   if (absl::Status s = r.String(root, "", "spool", &spool); !s.ok()) return s;
#pragma once

#define TOML_EXCEPTIONS 0
#include <toml++/toml.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mxb {
namespace dkim {
struct SigningKey;
}

class TomlReader {
 public:
  explicit TomlReader(std::string file) : file_(std::move(file)) {}

  absl::Status Error(const std::string& key, const std::string& why) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ": ", key, ": ", why));
  }

  // Every CheckKeys call adds prefix+key of what the table accepts to *accepted and of what it
  // names to *present (engine/config.h ConfigKeyListing: the example config's test).
  void ListKeys(std::set<std::string>* accepted, std::set<std::string>* present) {
    accepted_ = accepted;
    present_ = present;
  }

  // Rejects keys of `table` not in `known` (the typo guard).
  absl::Status CheckKeys(const toml::table& table, const std::string& prefix,
                         const std::set<std::string>& known) const {
    if (accepted_ != nullptr) {
      for (const std::string& k : known) accepted_->insert(prefix + k);
    }
    for (const auto& [k, v] : table) {
      std::string key(k.str());
      if (present_ != nullptr) present_->insert(prefix + key);
      if (!known.count(key)) {
        return Error(absl::StrCat(prefix, key),
                     absl::StrCat("unknown key (line ", k.source().begin.line, ")"));
      }
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Int(const toml::table& t, const std::string& prefix, const char* key, T min, T max,
                   T* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return absl::OkStatus();
    // Integers only: toml++'s float-to-integer conversion casts out-of-range values (1e300) to
    // int64_t, which is undefined behaviour, and nan/inf/2.5 are no counts anyway.
    const toml::value<int64_t>* i = n->as_integer();
    std::optional<int64_t> v;
    if (i != nullptr) v = i->get();
    if (!v || *v < static_cast<int64_t>(min) || *v > static_cast<int64_t>(max)) {
      return Error(absl::StrCat(prefix, key),
                   absl::StrCat("expected an integer in [", min, ", ", max, "]"));
    }
    *out = static_cast<T>(*v);
    return absl::OkStatus();
  }

  absl::Status Seconds(const toml::table& t, const std::string& prefix, const char* key,
                       int64_t max, absl::Duration* out) const {
    int64_t secs = -1;
    if (absl::Status s = Int<int64_t>(t, prefix, key, 0, max, &secs); !s.ok()) return s;
    if (secs >= 0) *out = absl::Seconds(secs);
    return absl::OkStatus();
  }

  absl::Status String(const toml::table& t, const std::string& prefix, const char* key,
                      std::string* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return absl::OkStatus();
    std::optional<std::string> v = n->value<std::string>();
    if (!v) return Error(absl::StrCat(prefix, key), "expected a string");
    *out = *v;
    return absl::OkStatus();
  }

  absl::Status Bool(const toml::table& t, const std::string& prefix, const char* key,
                    bool* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return absl::OkStatus();
    std::optional<bool> v = n->value<bool>();
    if (!v) return Error(absl::StrCat(prefix, key), "expected true or false");
    *out = *v;
    return absl::OkStatus();
  }

  absl::Status StringList(const toml::table& t, const std::string& prefix, const char* key,
                          std::vector<std::string>* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return absl::OkStatus();
    const toml::array* a = n->as_array();
    if (a == nullptr) return Error(absl::StrCat(prefix, key), "expected an array of strings");
    out->clear();
    for (const toml::node& e : *a) {
      std::optional<std::string> v = e.value<std::string>();
      if (!v) return Error(absl::StrCat(prefix, key), "expected an array of strings");
      out->push_back(*v);
    }
    return absl::OkStatus();
  }

 protected:
  std::string file_;
  std::set<std::string>* accepted_ = nullptr;
  std::set<std::string>* present_ = nullptr;
};

// The [[dkim]] array of tables (engine/config_dkim.cc; README "DKIM signing"): syntax and values
// only — the key files are read by dkim::Signer::Load at start-up.
[[nodiscard]] absl::Status ReadDkimConfig(const TomlReader& reader, const toml::table& root,
                                          std::vector<dkim::SigningKey>* out);

}  // namespace mxb
