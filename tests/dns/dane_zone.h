// DNSSEC fixture for DANE tests (RFC 7672 §2.2): one signed zone with the caller's MX/A/TLSA
// records, optionally an unsigned child zone delegated from it without DS (an insecure
// delegation: answers below it carry no AD), and RRsets altered after signing (bogus: the
// validating unbound answers SERVFAIL). Built on MakeSignedZone/UnboundServer from
// dns_test_util.h; used by tests/dns and by the DANE integration tests.
//
// Test threads only. Example:
//   mxb::testing::DaneZoneSpec spec;
//   spec.zone = "dane.test.";
//   spec.records = "dane.test. IN MX 10 mx.dane.test.\nmx.dane.test. IN A 127.0.0.1\n"
//                  "_25._tcp.mx.dane.test. IN TLSA 3 1 1 <hex>\n";
//   spec.insecure_child = "plain.dane.test.";
//   spec.insecure_records = "_25._tcp.mx.plain.dane.test. IN TLSA 3 1 1 <hex>\n";
//   spec.bogus_owners = {"_25._tcp.mx-bogus.dane.test."};
//   auto dns = mxb::testing::StartDaneUnbound(spec);   // (*dns)->address() for the resolver
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/dns/dns_test_util.h"

namespace mxb::testing {

struct DaneZoneSpec {
  std::string zone;     // the signed zone, with trailing dot ("dane.test.")
  std::string records;  // its RRs in zone-file syntax (SOA and NS are added)
  // An unsigned zone below `zone` with its NS in the parent but no DS (RFC 4035 §5.2: provably
  // insecure). Empty: none.
  std::string insecure_child;
  std::string insecure_records;
  // Owner names (absolute) in `zone` whose TLSA/A/MX rdata is changed after signing, so their
  // RRSIGs no longer verify: validation fails -> SERVFAIL.
  std::vector<std::string> bogus_owners;
  // Extra lines for unbound's server: clause (e.g. more trust anchors, local-data).
  std::string server_conf;
};

// The running resolver and the zone files; the destructor stops unbound and removes both.
struct DaneUnbound {
  ~DaneUnbound();
  std::string address() const { return unbound->address(); }
  std::unique_ptr<UnboundServer> unbound;
  std::string zone_dir;
};

// Signs the zone (ldns), writes the child, starts a validating unbound serving both as
// auth-zones with the zone's KSK as trust anchor. NotFound when unbound/ldnsutils are missing
// (callers GTEST_SKIP with the message).
absl::StatusOr<std::unique_ptr<DaneUnbound>> StartDaneUnbound(const DaneZoneSpec& spec);

// "3 1 1 <hex>": TLSA RDATA in zone-file presentation form (RFC 6698 §2.2).
std::string TlsaRdata(int usage, int selector, int matching_type, const std::string& data);

}  // namespace mxb::testing
