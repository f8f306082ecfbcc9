// DNS wire format for the resolver: builds queries and parses answers (RFC 1035 §4) into the
// records the resolver needs, with the facts c-ares' typed parsers drop: RCODE, the AD bit,
// the TTLs, the CNAME chain and the SOA of a negative answer (RFC 2308). Name decompression is
// c-ares' (ares_expand_name). Pure functions over bytes; no I/O, any thread.
//
// Answers come from the network: every read is bounds-checked and a malformed answer becomes
// `rcode = -1` with a reason, never an assertion.
//
//   absl::StatusOr<std::vector<uint8_t>> q = dns_wire::BuildQuery("example.com", dns_wire::kTypeMx);
//   dns_wire::ParsedAnswer a = dns_wire::ParseAnswer(abuf, alen, "example.com", dns_wire::kTypeMx);
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "dns/resolver.h"

namespace mxb::dns_wire {

inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeCname = 5;
inline constexpr uint16_t kTypeSoa = 6;
inline constexpr uint16_t kTypeMx = 15;
inline constexpr uint16_t kTypeTxt = 16;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kTypeTlsa = 52;  // RFC 6698 §7.1
const char* TypeName(uint16_t type);       // "MX", "TLSA", "TYPE99"

inline constexpr int kMaxCnameHops = 16;

inline constexpr int kRcodeNoError = 0;
inline constexpr int kRcodeServFail = 2;
inline constexpr int kRcodeNxDomain = 3;
inline constexpr int kRcodeNotImp = 4;
inline constexpr int kRcodeRefused = 5;
const char* RcodeName(int rcode);  // "SERVFAIL", "RCODE11"

// EDNS0 UDP payload size we advertise (the DNS flag day 2020 value: no IP fragmentation).
inline constexpr uint16_t kEdnsUdpSize = 1232;

struct MxRecord {
  uint16_t preference = 0;
  std::string exchange;  // lower case, no trailing dot; "" for the root (null MX, RFC 7505)
};

struct ParsedAnswer {
  int rcode = -1;              // header RCODE; -1: the answer could not be parsed (see error)
  bool authenticated = false;  // AD bit (RFC 4035 §3.2.3)
  bool truncated = false;      // TC bit
  std::string canonical;       // qname after the CNAMEs of the answer section were followed
  std::vector<std::string> cname_chain;  // qname, then each CNAME target followed (canonical last)
  // Non-empty when the CNAMEs of the answer form a loop ("CNAME loop: a -> b -> a") or a chain
  // longer than 16: a resolution failure, temporary like SERVFAIL (RFC 1034 §3.6.2 forbids
  // loops; the zone's owner can fix it), never a reason to bounce.
  std::string cname_error;
  size_t records = 0;          // RRs of the asked type at `canonical`
  uint32_t ttl = 0;            // min TTL over those RRs and the CNAMEs followed
  std::optional<uint32_t> negative_ttl;  // RFC 2308 §5: min(SOA TTL, SOA MINIMUM), if a SOA came
  std::vector<MxRecord> mx;
  std::vector<sockaddr_storage> addresses;  // A / AAAA, port 0
  std::vector<std::string> txt;             // one string per RR, character-strings concatenated
  std::vector<TlsaRecord> tlsa;
  std::string error;  // why rcode is -1
};

// A recursive query for `name` (A-label, no trailing dot) with the AD bit set (RFC 6840 §5.7: a
// validating resolver then reports AD without us asking for RRSIGs) and an EDNS0 OPT RR
// advertising kEdnsUdpSize; `dnssec_ok` also sets DO (RFC 3225), which makes the answers carry
// RRSIGs — not needed to learn AD, so the resolver leaves it off.
absl::StatusOr<std::vector<uint8_t>> BuildQuery(absl::string_view name, uint16_t type,
                                                bool dnssec_ok = false);

// Parses an answer to the query (qname, qtype, class IN). Records of other types, other classes
// and other owners are ignored; CNAMEs are followed from qname (at most kMaxCnameHops; a loop or
// a longer chain sets cname_error).
ParsedAnswer ParseAnswer(const uint8_t* abuf, size_t alen, absl::string_view qname,
                         uint16_t qtype);

// The lookup form of a domain or host name: lower case, one trailing dot removed, U-labels
// converted to A-labels (libidn2, IDNA2008 with UTS #46 non-transitional processing, so
// "ß" stays "ß": bücher.example -> xn--bcher-kva.example). Rejects empty names, labels that
// are empty or longer than 63, names longer than 253, characters outside [a-z0-9-_] and
// address literals. The error says which rule and the value.
absl::StatusOr<std::string> NormalizeName(absl::string_view name);

// True for "192.0.2.1", "2001:db8::1" and bracketed forms ("[192.0.2.1]", "[IPv6:...]").
bool IsAddressLiteral(absl::string_view name);

}  // namespace mxb::dns_wire
