#include "dns/address_scope.h"

#include <netinet/in.h>

#include <cstdint>
#include <cstring>

namespace mxb {
namespace {

// `a` in host byte order.
AddressScope ScopeOfV4(uint32_t a) {
  const uint8_t first = a >> 24;
  if (first == 127) return AddressScope::kLoopback;
  if (first == 0) return AddressScope::kUnspecified;               // RFC 1122 §3.2.1.3
  if (first == 10) return AddressScope::kPrivate;                  // RFC 1918
  if ((a & 0xfff00000u) == 0xac100000u) return AddressScope::kPrivate;  // 172.16/12
  if ((a & 0xffff0000u) == 0xc0a80000u) return AddressScope::kPrivate;  // 192.168/16
  if ((a & 0xffc00000u) == 0x64400000u) return AddressScope::kPrivate;  // 100.64/10, RFC 6598
  if ((a & 0xffff0000u) == 0xa9fe0000u) return AddressScope::kLinkLocal;  // 169.254/16
  if (first >= 224) return AddressScope::kMulticast;  // 224/4 multicast, 240/4 reserved
  return AddressScope::kGlobal;
}

}  // namespace

const char* ToString(AddressScope s) {
  switch (s) {
    case AddressScope::kGlobal:
      return "global";
    case AddressScope::kLoopback:
      return "loopback";
    case AddressScope::kUnspecified:
      return "unspecified";
    case AddressScope::kPrivate:
      return "private";
    case AddressScope::kLinkLocal:
      return "link-local";
    case AddressScope::kMulticast:
      return "multicast/reserved";
  }
  return "unknown";
}

AddressScope ScopeOf(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    return ScopeOfV4(ntohl(in->sin_addr.s_addr));
  }
  if (addr.ss_family != AF_INET6) return AddressScope::kUnspecified;
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
  const uint8_t* b = in6->sin6_addr.s6_addr;
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(b, kMappedPrefix, 12) == 0) {
    return ScopeOfV4(uint32_t{b[12]} << 24 | uint32_t{b[13]} << 16 | uint32_t{b[14]} << 8 | b[15]);
  }
  bool zero_but_last = true;
  for (int i = 0; i < 15; ++i) zero_but_last = zero_but_last && b[i] == 0;
  if (zero_but_last && b[15] == 1) return AddressScope::kLoopback;     // ::1
  if (zero_but_last && b[15] == 0) return AddressScope::kUnspecified;  // ::
  if ((b[0] & 0xfe) == 0xfc) return AddressScope::kPrivate;            // fc00::/7, RFC 4193
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return AddressScope::kLinkLocal;  // fe80::/10
  if (b[0] == 0xff) return AddressScope::kMulticast;
  return AddressScope::kGlobal;
}

}  // namespace mxb
