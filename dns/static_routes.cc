#include "dns/static_routes.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mxb {
namespace {

absl::StatusOr<NextHop> ParseHop(absl::string_view spec, absl::string_view hop,
                                 uint16_t default_port) {
  NextHop out;
  out.port = default_port;
  absl::string_view host = hop;
  absl::string_view port;
  if (absl::StartsWith(hop, "[")) {
    size_t close = hop.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--route '", spec, "': unterminated '[' in '", hop, "'"));
    }
    host = hop.substr(1, close - 1);
    absl::string_view rest = hop.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') {
        return absl::InvalidArgumentError(
            absl::StrCat("--route '", spec, "': junk after ']' in '", hop, "'"));
      }
      port = rest.substr(1);
    }
  } else if (size_t colon = hop.rfind(':'); colon != absl::string_view::npos) {
    host = hop.substr(0, colon);
    port = hop.substr(colon + 1);
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--route '", spec, "': empty host"));
  }
  // NAME@ADDR: the MX name for policy and certificate checks, the address to connect to.
  absl::string_view connect_host = host;
  if (size_t at = host.find('@'); at != absl::string_view::npos) {
    connect_host = host.substr(at + 1);
    host = host.substr(0, at);
    if (host.empty() || connect_host.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--route '", spec, "': expected NAME@ADDRESS in '", hop, "'"));
    }
  }
  if (!port.empty()) {
    uint32_t p = 0;
    if (!absl::SimpleAtoi(port, &p) || p == 0 || p > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("--route '", spec, "': bad port '", port, "'"));
    }
    out.port = static_cast<uint16_t>(p);
    out.explicit_port = true;
  }
  out.host = absl::AsciiStrToLower(host);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port_str = std::to_string(out.port);
  std::string connect_name(connect_host);
  int rc = getaddrinfo(connect_name.c_str(), port_str.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--route '", spec, "': cannot resolve '",
                                                   connect_name, "': ", gai_strerror(rc)));
  }
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    sockaddr_storage ss{};
    std::memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    bool dup = std::any_of(out.addresses.begin(), out.addresses.end(), [&](const auto& a) {
      return std::memcmp(&a, &ss, sizeof(ss)) == 0;
    });
    if (!dup) out.addresses.push_back(ss);
  }
  freeaddrinfo(res);
  return out;
}

}  // namespace

std::string NextHop::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<StaticRoutes> StaticRoutes::Parse(const std::vector<std::string>& specs,
                                                 uint16_t default_port) {
  StaticRoutes table;
  for (const std::string& spec : specs) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--route '", spec, "': expected DOMAIN=HOST[:PORT]"));
    }
    Route route;
    route.pattern = absl::AsciiStrToLower(absl::StripAsciiWhitespace(spec.substr(0, eq)));
    if (route.pattern.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--route '", spec, "': empty domain"));
    }
    for (absl::string_view hop :
         absl::StrSplit(spec.substr(eq + 1), ',', absl::SkipWhitespace())) {
      absl::StatusOr<NextHop> h = ParseHop(spec, absl::StripAsciiWhitespace(hop), default_port);
      if (!h.ok()) return h.status();
      route.hops.push_back(*std::move(h));
    }
    if (route.hops.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--route '", spec, "': empty next hop"));
    }
    if (route.pattern == "*") {
      table.default_ = std::move(route);
      table.has_default_ = true;
    } else if (route.pattern[0] == '.') {
      table.suffix_.push_back(std::move(route));
    } else {
      std::string key = route.pattern;
      table.exact_[key] = std::move(route);
    }
  }
  std::sort(table.suffix_.begin(), table.suffix_.end(),
            [](const Route& a, const Route& b) { return a.pattern.size() > b.pattern.size(); });
  return table;
}

const Route* StaticRoutes::Find(absl::string_view domain) const {
  if (auto it = exact_.find(domain); it != exact_.end()) return &it->second;
  for (const Route& r : suffix_) {
    if (absl::EndsWith(domain, r.pattern)) return &r;
  }
  return has_default_ ? &default_ : nullptr;
}

std::string SockaddrIp(const sockaddr_storage& addr) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, buf, sizeof(buf));
  } else if (addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, buf,
              sizeof(buf));
  }
  return buf;
}

uint16_t SockaddrPort(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  }
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  return 0;
}

std::string SockaddrToString(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET6) {
    return absl::StrCat("[", SockaddrIp(addr), "]:", SockaddrPort(addr));
  }
  return absl::StrCat(SockaddrIp(addr), ":", SockaddrPort(addr));
}

}  // namespace mxb
