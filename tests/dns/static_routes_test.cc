// Static routes (--route): next-hop names resolve through the configured DNS servers (a real
// unbound on 127.0.0.1), not the system resolver; address literals need no DNS at all.
#include "dns/static_routes.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/dns/dns_test_util.h"

namespace mxb {
namespace {

constexpr char kZone[] = R"(
  local-zone: "routes.test." static
  local-data: "routes.test. 3600 IN SOA ns.routes.test. host.routes.test. 1 3600 600 86400 120"
  local-data: "relay.routes.test. 300 IN A 127.0.0.77"
  local-data: "relay.routes.test. 300 IN AAAA ::1"
)";

// Issue 10 item 11: "*=relay.routes.test:2525" with --dns must ask that server. Before, the
// name went to getaddrinfo (resolv.conf), which does not know it.
TEST(StaticRoutesTest, HostNamesResolveThroughTheConfiguredDns) {
  absl::StatusOr<std::unique_ptr<testing::UnboundServer>> dns =
      testing::UnboundServer::Start(kZone, "");
  if (!dns.ok()) GTEST_SKIP() << "unbound: " << dns.status();
  absl::StatusOr<StaticRoutes> routes =
      StaticRoutes::Parse({"*=relay.routes.test:2525", "lit.example=127.0.0.9"}, 25,
                          {(*dns)->address()});
  ASSERT_TRUE(routes.ok()) << routes.status();
  const Route* r = routes->Find("any.example");
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->hops.size(), 1u);
  EXPECT_EQ(r->hops[0].host, "relay.routes.test");
  std::vector<std::string> got;
  for (const sockaddr_storage& a : r->hops[0].addresses) got.push_back(SockaddrToString(a));
  EXPECT_EQ(got, (std::vector<std::string>{"127.0.0.77:2525", "[::1]:2525"}));
  const Route* lit = routes->Find("lit.example");
  ASSERT_NE(lit, nullptr);
  EXPECT_EQ(SockaddrToString(lit->hops[0].addresses.at(0)), "127.0.0.9:25");

  // A name the configured DNS does not know is an error naming the route, even if the system
  // resolver (/etc/hosts) knows it.
  absl::StatusOr<StaticRoutes> missing =
      StaticRoutes::Parse({"*=nope.routes.test", "x=localhost"}, 25, {(*dns)->address()});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("--route '*=nope.routes.test': cannot resolve"),
            absl::string_view::npos)
      << missing.status();
  EXPECT_NE(missing.status().message().find((*dns)->address()), absl::string_view::npos)
      << missing.status();
}

TEST(StaticRoutesTest, WithoutDnsServersTheSystemResolverIsUsed) {
  absl::StatusOr<StaticRoutes> routes = StaticRoutes::Parse({"*=localhost:2525"}, 25);
  ASSERT_TRUE(routes.ok()) << routes.status();
  EXPECT_FALSE(routes->Find("a.example")->hops[0].addresses.empty());
}

// Issue 16: "DOMAIN=relay:NAME" takes its hop from the named relay and remembers the name;
// an unknown name is an error naming the route.
TEST(StaticRoutesTest, RelayRoutesUseTheNamedHop) {
  absl::StatusOr<StaticRoutes> routes = StaticRoutes::Parse(
      {"*=relay:smart", "direct.example=127.0.0.9"}, 25, {},
      {{"smart", "relay.example@127.0.0.26:465"}});
  ASSERT_TRUE(routes.ok()) << routes.status();
  const Route* r = routes->Find("any.example");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->relay, "smart");
  ASSERT_EQ(r->hops.size(), 1u);
  EXPECT_EQ(r->hops[0].host, "relay.example");
  EXPECT_EQ(SockaddrToString(r->hops[0].addresses.at(0)), "127.0.0.26:465");
  EXPECT_EQ(routes->Find("direct.example")->relay, "");

  absl::StatusOr<StaticRoutes> unknown = StaticRoutes::Parse({"*=relay:nope"}, 25, {}, {});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().message(),
            "--route '*=relay:nope': no relay named 'nope' ([relay.NAME] table)");
}

}  // namespace
}  // namespace mxb
