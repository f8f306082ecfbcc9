// The DNS half of DANE (RFC 7672 §2.2): after the MX lookup, the TLSA RRset of every MX host
// whose MX and address answers were DNSSEC-validated, turned into the HopDnsFacts that
// tls/hop_policy.h decides on. Hosts that are not secure get no TLSA query (§2.2.1/§2.2.2).
//
// Runs on the worker thread that owns `resolver`; `done` runs on it once, with one
// HopDnsFacts per mx.hosts entry (same order), possibly synchronously (cache hits).
//
//   ResolveMxAndTlsa(resolver, "example.com", 25, 26, /*dane=*/true,
//                    [](const MxResult& mx, std::vector<HopDnsFacts> facts) { ... });
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/strings/string_view.h"
#include "dns/resolver.h"
#include "tls/hop_policy.h"

namespace mxb {

using MxAndTlsaCallback = std::function<void(const MxResult&, std::vector<HopDnsFacts>)>;

// `port`: the port delivery connects to; the TLSA base name is _<port>._tcp.<mx host>.
// `smtps_port` (0 = none): smtps- hosts also get _<smtps_port>._tcp.<host> for their
// implicit-TLS attempt (HopDnsFacts::implicit_tlsa).
void ResolveMxAndTlsa(Resolver* resolver, absl::string_view domain, uint16_t port,
                      uint16_t smtps_port, bool dane, MxAndTlsaCallback done);

// One TLSA answer as policy facts for `host` of `mx` (exposed for tests).
HopDnsFacts TlsaFacts(const MxResult& mx, const MxHost& host, const TlsaResult& t);

}  // namespace mxb
