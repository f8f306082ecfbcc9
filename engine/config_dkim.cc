// [[dkim]] entries of the config file -> EngineConfig::dkim_keys (dkim/signer.h says what each
// key means; README "DKIM signing").
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "dkim/signer.h"
#include "engine/config.h"
#include "engine/config_reader.h"

namespace mxb {
namespace {

// DNS labels as a selector or domain may carry them (RFC 6376 §3.1: selectors are
// dot-separated sub-domains); anything else could not be published under _domainkey.
bool DnsName(const std::string& s) {
  if (s.empty() || s.front() == '.' || s.back() == '.' || s.find("..") != std::string::npos) {
    return false;
  }
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::Status ReadDkimConfig(const TomlReader& r, const toml::table& root,
                            std::vector<dkim::SigningKey>* out) {
  const toml::node* n = root.get("dkim");
  if (n == nullptr) return absl::OkStatus();
  const toml::array* a = n->as_array();
  if (a == nullptr) return r.Error("dkim", "expected an array of tables: [[dkim]]");
  absl::Status s;
  for (size_t i = 0; i < a->size(); ++i) {
    const std::string name = absl::StrCat("dkim[", i, "]");
    const std::string p = name + ".";
    const toml::table* t = (*a)[i].as_table();
    if (t == nullptr) return r.Error(name, "expected a table");
    if (!(s = r.CheckKeys(*t, p, {"domain", "selector", "key_file", "algorithm", "headers",
                                  "oversign", "canonicalization", "expire", "sender_domain",
                                  "job"}))
             .ok())
      return s;
    dkim::SigningKey k;
    k.name = name;
    for (auto [key, field] : {std::pair{"domain", &k.domain}, std::pair{"selector", &k.selector},
                              std::pair{"key_file", &k.key_file}}) {
      if (!(s = r.String(*t, p, key, field)).ok()) return s;
      if (field->empty()) return r.Error(p + key, "required");
    }
    k.domain = absl::AsciiStrToLower(k.domain);
    if (!DnsName(k.domain)) return r.Error(p + "domain", "expected a domain name");
    if (!DnsName(k.selector)) return r.Error(p + "selector", "expected DNS labels (RFC 6376 §3.1)");
    std::string text;
    if (!(s = r.String(*t, p, "algorithm", &text)).ok()) return s;
    if (!text.empty() && !dkim::ParseAlgorithm(text, &k.algorithm)) {
      return r.Error(p + "algorithm",
                     absl::StrCat("expected rsa-sha256|ed25519-sha256, got '", text, "'"));
    }
    text.clear();
    if (!(s = r.String(*t, p, "canonicalization", &text)).ok()) return s;
    if (!text.empty() && !dkim::ParseCanonicalization(text, &k.header_canon, &k.body_canon)) {
      return r.Error(p + "canonicalization",
                     absl::StrCat("expected HEADER/BODY of simple|relaxed, got '", text, "'"));
    }
    if (!(s = r.StringList(*t, p, "headers", &k.headers)).ok()) return s;
    if (t->contains("headers") && k.headers.empty()) {
      return r.Error(p + "headers", "empty (leave it out for the default list)");
    }
    if (!(s = r.StringList(*t, p, "oversign", &k.oversign)).ok()) return s;
    if (!(s = r.Int<int64_t>(*t, p, "expire", 0, int64_t{86400} * 365, &k.expire_seconds)).ok())
      return s;
    if (!(s = r.String(*t, p, "sender_domain", &k.sender_domain)).ok()) return s;
    if (!(s = r.String(*t, p, "job", &k.job)).ok()) return s;
    k.sender_domain = absl::AsciiStrToLower(k.sender_domain);
    if (t->contains("sender_domain") && k.sender_domain != "*" && !DnsName(k.sender_domain)) {
      return r.Error(p + "sender_domain", "expected a domain name or \"*\"");
    }
    if (t->contains("job") && k.job.empty()) return r.Error(p + "job", "empty");
    out->push_back(std::move(k));
  }
  return absl::OkStatus();
}

absl::Status LoadDkimSigner(EngineConfig* config) {
  if (config->dkim_keys.empty() || config->dkim != nullptr) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<dkim::Signer>> signer =
      dkim::Signer::Load(config->dkim_keys, config->config_path);
  if (!signer.ok()) return signer.status();
  config->dkim = *std::move(signer);
  return absl::OkStatus();
}

}  // namespace mxb
