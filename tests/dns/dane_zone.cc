#include "tests/dns/dane_zone.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mxb::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Spill(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  return static_cast<bool>(out);
}

// Flips one hex digit / address octet of every non-RRSIG RR owned by `owner`, leaving its RRSIG
// as it was: the signature no longer covers the data (RFC 4035 §5.3.3 fails -> bogus).
std::string Corrupt(const std::string& signed_zone, const std::string& owner) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(signed_zone, '\n')) {
    std::string l(line);
    const std::vector<std::string> f = absl::StrSplit(l, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (f.size() >= 5 && absl::EqualsIgnoreCase(f[0], owner) && f[3] != "RRSIG" &&
        f[3] != "NSEC" && (f[3] == "TLSA" || f[3] == "A" || f[3] == "MX")) {
      char& c = l.back();
      c = c == '1' ? '2' : '1';
    }
    absl::StrAppend(&out, l, "\n");
  }
  return out;
}

}  // namespace

DaneUnbound::~DaneUnbound() {
  unbound.reset();
  if (!zone_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(zone_dir, ec);
  }
}

std::string TlsaRdata(int usage, int selector, int matching_type, const std::string& data) {
  return absl::StrCat(usage, " ", selector, " ", matching_type, " ",
                      absl::BytesToHexString(data));
}

absl::StatusOr<std::unique_ptr<DaneUnbound>> StartDaneUnbound(const DaneZoneSpec& spec) {
  auto world = std::make_unique<DaneUnbound>();
  std::string tmpl = (std::filesystem::temp_directory_path() / "mxb-dane-zones-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  world->zone_dir = tmpl;
  const std::string& z = spec.zone;
  std::string records = absl::StrCat("$TTL 300\n", z, " IN SOA ns.", z, " host.", z,
                                     " 1 3600 600 86400 60\n", z, " IN NS ns.", z, "\nns.", z,
                                     " IN A 127.0.0.53\n", spec.records);
  if (!spec.insecure_child.empty()) {
    // The delegation: NS + glue in the parent, no DS (signed as an insecure referral).
    absl::StrAppend(&records, spec.insecure_child, " IN NS ns.", spec.insecure_child, "\nns.",
                    spec.insecure_child, " IN A 127.0.0.53\n");
  }
  absl::StatusOr<SignedZone> signed_zone = MakeSignedZone(world->zone_dir, z, records);
  if (!signed_zone.ok()) return signed_zone.status();
  if (!spec.bogus_owners.empty()) {
    std::string text = Slurp(signed_zone->zone_file);
    for (const std::string& owner : spec.bogus_owners) text = Corrupt(text, owner);
    if (!Spill(signed_zone->zone_file, text)) return absl::InternalError("cannot rewrite zone");
  }
  std::string server_conf = absl::StrCat("  trust-anchor-file: \"", signed_zone->anchor_file,
                                         "\"\n  val-log-level: 2\n", spec.server_conf);
  std::string extra = AuthZone(z, signed_zone->zone_file);
  if (!spec.insecure_child.empty()) {
    const std::string& c = spec.insecure_child;
    const std::string file = absl::StrCat(world->zone_dir, "/", c, "zone");
    if (!Spill(file, absl::StrCat("$TTL 300\n", c, " IN SOA ns.", c, " host.", c,
                                  " 1 3600 600 86400 60\n", c, " IN NS ns.", c, "\nns.", c,
                                  " IN A 127.0.0.53\n", spec.insecure_records))) {
      return absl::InternalError("cannot write the insecure child zone");
    }
    extra += AuthZone(c, file);
  }
  absl::StatusOr<std::unique_ptr<UnboundServer>> s = UnboundServer::Start(server_conf, extra);
  if (!s.ok()) return s.status();
  world->unbound = *std::move(s);
  return world;
}

}  // namespace mxb::testing
