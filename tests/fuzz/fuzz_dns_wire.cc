// libFuzzer target: the DNS answer parser (dns/dns_wire.h) — bytes from the network — and the
// name normaliser.
//
// The first byte picks the query type; the rest is the answer packet.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "dns/dns_wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  using namespace mxb::dns_wire;
  static constexpr uint16_t kTypes[] = {kTypeA, kTypeAaaa, kTypeMx, kTypeTxt, kTypeTlsa,
                                        kTypeCname, kTypeSoa};
  const uint16_t qtype = kTypes[data[0] % (sizeof(kTypes) / sizeof(kTypes[0]))];
  const bool other_name = (data[0] & 0x80) != 0;
  ParsedAnswer a = ParseAnswer(data + 1, size - 1, other_name ? "a.example" : "example.com", qtype);
  if (a.rcode < -1 || a.rcode > 15) std::abort();
  if (a.rcode == -1 && a.error.empty()) std::abort();
  if (a.cname_chain.size() > static_cast<size_t>(kMaxCnameHops) + 1) std::abort();
  // The name normaliser sees MX targets and domains from files: any bytes.
  absl::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  absl::StatusOr<std::string> n = NormalizeName(text);
  if (n.ok() && (n->empty() || n->size() > 253)) std::abort();
  (void)IsAddressLiteral(text);
  return 0;
}
