// AddressScope: what kind of network an IP address belongs to, for deciding whether an address
// a recipient domain published in DNS may be a delivery target.
//
// A domain's MX records are data from the outside world: "mx.attacker.example A 127.0.0.1" or an
// MX pointing at 10.0.0.5 would make an ESP's engine connect to its own internal services. The
// engine refuses such targets unless `[dns] allow_private_mx` (tests, lab setups). Statically
// configured routes are the operator's word and are never checked.
//
// Pure functions; any thread.
//
//   switch (ScopeOf(addr)) { case AddressScope::kLoopback: ...bounce "loops back to myself" }
#pragma once

#include <sys/socket.h>

namespace mxb {

enum class AddressScope {
  kGlobal,       // anything else: a real Internet address
  kLoopback,     // 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104
  kUnspecified,  // 0.0.0.0/8 ("this network"), ::
  kPrivate,      // RFC 1918 10/8, 172.16/12, 192.168/16; RFC 6598 100.64/10; RFC 4193 fc00::/7
  kLinkLocal,    // 169.254/16, fe80::/10
  kMulticast,    // 224/4, 240/4 (reserved, broadcast), ff00::/8
};
const char* ToString(AddressScope s);

// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are judged as the IPv4 address they carry.
AddressScope ScopeOf(const sockaddr_storage& addr);

// True for the scopes the engine refuses as MX targets by default (all but kGlobal).
inline bool IsNonPublic(AddressScope s) { return s != AddressScope::kGlobal; }

}  // namespace mxb
