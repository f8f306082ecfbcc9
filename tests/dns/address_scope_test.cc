// dns/address_scope: which addresses a published MX may not point at (issue 10 item 10).
#include "dns/address_scope.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace mxb {
namespace {

sockaddr_storage Addr(const std::string& ip) {
  sockaddr_storage ss{};
  if (ip.find(':') == std::string::npos) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    EXPECT_EQ(inet_pton(AF_INET, ip.c_str(), &in->sin_addr), 1) << ip;
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    EXPECT_EQ(inet_pton(AF_INET6, ip.c_str(), &in6->sin6_addr), 1) << ip;
  }
  return ss;
}

struct Case {
  const char* ip;
  AddressScope scope;
};

constexpr Case kCases[] = {
    {"127.0.0.1", AddressScope::kLoopback},       {"127.255.255.254", AddressScope::kLoopback},
    {"::1", AddressScope::kLoopback},             {"::ffff:127.0.0.1", AddressScope::kLoopback},
    {"0.0.0.0", AddressScope::kUnspecified},      {"0.1.2.3", AddressScope::kUnspecified},
    {"::", AddressScope::kUnspecified},           {"10.0.0.1", AddressScope::kPrivate},
    {"172.16.0.1", AddressScope::kPrivate},       {"172.31.255.255", AddressScope::kPrivate},
    {"192.168.1.1", AddressScope::kPrivate},      {"100.64.0.1", AddressScope::kPrivate},
    {"fd00::1", AddressScope::kPrivate},          {"fc12::1", AddressScope::kPrivate},
    {"::ffff:10.1.2.3", AddressScope::kPrivate},  {"169.254.169.254", AddressScope::kLinkLocal},
    {"fe80::1", AddressScope::kLinkLocal},        {"224.0.0.1", AddressScope::kMulticast},
    {"255.255.255.255", AddressScope::kMulticast}, {"ff02::1", AddressScope::kMulticast},
    // Neighbours of the ranges above stay public.
    {"172.15.255.255", AddressScope::kGlobal},    {"172.32.0.0", AddressScope::kGlobal},
    {"100.128.0.1", AddressScope::kGlobal},       {"192.0.2.10", AddressScope::kGlobal},
    {"8.8.8.8", AddressScope::kGlobal},           {"2001:db8::1", AddressScope::kGlobal},
    {"128.0.0.1", AddressScope::kGlobal},         {"fec0::1", AddressScope::kGlobal},
};

TEST(AddressScope, Table) {
  for (const Case& c : kCases) {
    EXPECT_EQ(ToString(ScopeOf(Addr(c.ip))), std::string(ToString(c.scope))) << c.ip;
  }
}

TEST(AddressScope, OnlyGlobalIsPublic) {
  EXPECT_FALSE(IsNonPublic(AddressScope::kGlobal));
  EXPECT_TRUE(IsNonPublic(AddressScope::kLoopback));
  EXPECT_TRUE(IsNonPublic(AddressScope::kPrivate));
  sockaddr_storage none{};
  EXPECT_TRUE(IsNonPublic(ScopeOf(none))) << "no address family: never a target";
}

}  // namespace
}  // namespace mxb
