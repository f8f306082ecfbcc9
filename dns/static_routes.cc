#include "dns/static_routes.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace mxb {
namespace {

using Addresses = std::vector<sockaddr_storage>;

void AddUnique(Addresses* out, const sockaddr* sa, size_t len) {
  sockaddr_storage ss{};
  std::memcpy(&ss, sa, std::min(len, sizeof(ss)));
  bool dup = std::any_of(out->begin(), out->end(), [&](const sockaddr_storage& a) {
    return std::memcmp(&a, &ss, sizeof(ss)) == 0;
  });
  if (!dup) out->push_back(ss);
}

// A/AAAA of `name` through `servers` only (no /etc/hosts, no resolv.conf): the --dns the
// engine delivers with must also be the one that resolves its next hops. Blocking, start-up
// only: c-ares driven by poll() until the answer or its own timeouts.
absl::Status ResolveThrough(const std::vector<std::string>& servers, const std::string& name,
                            uint16_t port, Addresses* out) {
  static const int init_rc = ares_library_init(ARES_LIB_INIT_ALL);
  if (init_rc != ARES_SUCCESS) {
    return absl::InternalError(absl::StrCat("ares_library_init: ", ares_strerror(init_rc)));
  }
  ares_options o{};
  o.flags = ARES_FLAG_NOSEARCH;
  o.timeout = 2000;
  o.tries = 2;
  char lookups[] = "b";  // DNS only
  o.lookups = lookups;
  ares_channel ch = nullptr;
  int rc = ares_init_options(&ch, &o,
                             ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS);
  if (rc != ARES_SUCCESS) return absl::InternalError(absl::StrCat("ares_init: ", ares_strerror(rc)));
  rc = ares_set_servers_ports_csv(ch, absl::StrJoin(servers, ",").c_str());
  struct Result {
    bool done = false;
    int status = ARES_SUCCESS;
    Addresses* out;
  } result{false, ARES_SUCCESS, out};
  if (rc == ARES_SUCCESS) {
    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_NOSORT;  // keep the DNS order; no connect() probes
    const std::string port_str = std::to_string(port);
    ares_getaddrinfo(
        ch, name.c_str(), port_str.c_str(), &hints,
        [](void* arg, int status, int, ares_addrinfo* ai) {
          auto* r = static_cast<Result*>(arg);
          r->done = true;
          r->status = status;
          if (ai == nullptr) return;
          for (ares_addrinfo_node* n = ai->nodes; n != nullptr; n = n->ai_next) {
            AddUnique(r->out, n->ai_addr, n->ai_addrlen);
          }
          ares_freeaddrinfo(ai);
        },
        &result);
    while (!result.done) {
      ares_socket_t socks[ARES_GETSOCK_MAXNUM];
      const int bits = ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
      std::vector<pollfd> fds;
      for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
        short ev = (ARES_GETSOCK_READABLE(bits, i) ? POLLIN : 0) |
                   (ARES_GETSOCK_WRITABLE(bits, i) ? POLLOUT : 0);
        if (ev != 0) fds.push_back(pollfd{socks[i], ev, 0});
      }
      timeval tv{1, 0};
      ares_timeout(ch, &tv, &tv);
      const int ms = static_cast<int>(tv.tv_sec * 1000 + tv.tv_usec / 1000) + 1;
      if (poll(fds.data(), fds.size(), ms) <= 0) {
        ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        continue;
      }
      for (const pollfd& p : fds) {
        ares_process_fd(ch, (p.revents & (POLLIN | POLLERR | POLLHUP)) ? p.fd : ARES_SOCKET_BAD,
                        (p.revents & POLLOUT) ? p.fd : ARES_SOCKET_BAD);
      }
    }
  }
  ares_destroy(ch);
  if (rc != ARES_SUCCESS) {
    return absl::InvalidArgumentError(absl::StrCat("DNS servers: ", ares_strerror(rc)));
  }
  if (result.status != ARES_SUCCESS || out->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(result.status == ARES_ENOTFOUND ? "no A/AAAA record"
                                                     : ares_strerror(result.status),
                     " (via DNS ", absl::StrJoin(servers, ","), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<NextHop> ParseHop(absl::string_view spec, absl::string_view hop,
                                 uint16_t default_port,
                                 const std::vector<std::string>& dns_servers) {
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
  std::string port_str = std::to_string(out.port);
  std::string connect_name(connect_host);
  // An address literal never needs a resolver; a name goes to --dns when one is configured.
  in_addr a4;
  in6_addr a6;
  const bool literal = inet_pton(AF_INET, connect_name.c_str(), &a4) == 1 ||
                       inet_pton(AF_INET6, connect_name.c_str(), &a6) == 1;
  if (!literal && !dns_servers.empty()) {
    if (absl::Status s = ResolveThrough(dns_servers, connect_name, out.port, &out.addresses);
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--route '", spec, "': cannot resolve '",
                                                     connect_name, "': ", s.message()));
    }
    return out;
  }
  if (literal) hints.ai_flags = AI_NUMERICHOST;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(connect_name.c_str(), port_str.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--route '", spec, "': cannot resolve '",
                                                   connect_name, "': ", gai_strerror(rc)));
  }
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    AddUnique(&out.addresses, ai->ai_addr, ai->ai_addrlen);
  }
  freeaddrinfo(res);
  return out;
}

}  // namespace

std::string NextHop::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<StaticRoutes> StaticRoutes::Parse(
    const std::vector<std::string>& specs, uint16_t default_port,
    const std::vector<std::string>& dns_servers,
    const absl::flat_hash_map<std::string, std::string>& named_hops) {
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
    std::string value(absl::StripAsciiWhitespace(spec.substr(eq + 1)));
    if (absl::StartsWith(value, "relay:")) {
      // The whole value names one relay; its hop is the relay's host and port.
      route.relay = value.substr(6);
      auto it = named_hops.find(route.relay);
      if (it == named_hops.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--route '", spec, "': no relay named '", route.relay, "' ([relay.NAME] table)"));
      }
      value = it->second;
    }
    for (absl::string_view hop : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      absl::StatusOr<NextHop> h =
          ParseHop(spec, absl::StripAsciiWhitespace(hop), default_port, dns_servers);
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
