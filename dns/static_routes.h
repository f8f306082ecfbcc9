// StaticRoutes: a transport map / smarthost table — recipient domain -> list of next hops.
//
// Spec syntax (one per --route flag or `route` config entry):
//   "example.com=127.0.0.2:2525"            exact domain
//   ".example.com=127.0.0.3"                 any subdomain of example.com (not example.com itself)
//   "*=mx.relay.example:2525,127.0.0.9:25"   default for every other domain; several hops are
//                                            tried in order, like MX hosts of rising preference
//   "*=relay:smarthost"                      every domain through the named relay: its hop comes
//                                            from `named_hops` (the engine's [relay.NAME]
//                                            tables) and the route remembers the name
// A hop is HOST[:PORT], [IPv6]:PORT or NAME@ADDR[:PORT]; the port defaults to `default_port`.
// HOST (or NAME) is kept as the MX host name: it keys the TLS policy (starttls-/smtps- prefixes),
// certificate name checks and logs. NAME@ADDR pins the address while keeping the name. Addresses
// are resolved once when the table is built, at start-up only (the delivery path never blocks
// on DNS): through the configured DNS servers (--dns) when there are any — the same resolver
// the MX lookups use, no /etc/hosts —, else with getaddrinfo (the system resolver).
//
// Built once at start-up, then read-only: any thread may call Find().
//
//   auto routes = mxb::StaticRoutes::Parse({"*=127.0.0.1:2525"}, 25);
//   const mxb::Route* r = routes->Find("dest.example");   // nullptr: no route (use DNS)
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mxb {

struct NextHop {
  std::string host;   // as written: name or IP literal (the "MX host name")
  uint16_t port = 25;
  bool explicit_port = false;  // written as HOST:PORT
  std::vector<sockaddr_storage> addresses;  // resolved at build time, in getaddrinfo order
  std::string ToString() const;             // "host:port"
};

struct Route {
  std::string pattern;           // "example.com", ".example.com" or "*"
  std::vector<NextHop> hops;
  std::string relay;             // "relay:NAME" routes: NAME (its one hop is the relay's)
};

class StaticRoutes {
 public:
  // Errors name the spec and what is wrong ("--route 'x=': empty next hop"). `dns_servers` as
  // in Resolver::Options::servers ("127.0.0.1:5353"); empty = the system resolver.
  // `named_hops`: NAME -> hop spec for "relay:NAME" route values.
  [[nodiscard]] static absl::StatusOr<StaticRoutes> Parse(
      const std::vector<std::string>& specs, uint16_t default_port,
      const std::vector<std::string>& dns_servers = {},
      const absl::flat_hash_map<std::string, std::string>& named_hops = {});
  // Exact match, then the longest ".suffix" match, then "*". nullptr when nothing matches.
  const Route* Find(absl::string_view domain) const;
  bool empty() const { return exact_.empty() && suffix_.empty() && !has_default_; }

 private:
  absl::flat_hash_map<std::string, Route> exact_;
  std::vector<Route> suffix_;  // sorted longest suffix first
  Route default_;
  bool has_default_ = false;
};

// "127.0.0.1:2525" / "[::1]:25" for logs.
std::string SockaddrToString(const sockaddr_storage& addr);
std::string SockaddrIp(const sockaddr_storage& addr);
uint16_t SockaddrPort(const sockaddr_storage& addr);

}  // namespace mxb
