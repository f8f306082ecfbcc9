// Pure wire-format tests: query building, answer parsing edge cases, name normalisation.
#include "dns/dns_wire.h"

#include <arpa/inet.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace mxb::dns_wire {
namespace {

// Builds answers by hand: header, one question, then RRs.
class Packet {
 public:
  Packet(absl::string_view qname, uint16_t qtype, int rcode, bool ad = false) {
    bytes_ = {0x12, 0x34, 0x81, static_cast<uint8_t>(0x80 | (ad ? 0x20 : 0) | rcode),
              0, 1, 0, 0, 0, 0, 0, 0};
    Name(qname);
    Put16(qtype);
    Put16(1);
  }
  Packet& Answer(absl::string_view owner, uint16_t type, uint32_t ttl,
                 const std::vector<uint8_t>& rdata) {
    ++bytes_[7];
    Rr(owner, type, ttl, rdata);
    return *this;
  }
  Packet& Authority(absl::string_view owner, uint16_t type, uint32_t ttl,
                    const std::vector<uint8_t>& rdata) {
    ++bytes_[9];
    Rr(owner, type, ttl, rdata);
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  std::vector<uint8_t>& mutable_bytes() { return bytes_; }

  static std::vector<uint8_t> Encode(absl::string_view name) {
    std::vector<uint8_t> out;
    size_t start = 0;
    while (start < name.size()) {
      size_t dot = name.find('.', start);
      if (dot == absl::string_view::npos) dot = name.size();
      out.push_back(static_cast<uint8_t>(dot - start));
      out.insert(out.end(), name.begin() + start, name.begin() + dot);
      start = dot + 1;
    }
    out.push_back(0);
    return out;
  }

 private:
  void Put16(uint16_t v) {
    bytes_.push_back(v >> 8);
    bytes_.push_back(v & 0xFF);
  }
  void Name(absl::string_view n) {
    std::vector<uint8_t> e = Encode(n);
    bytes_.insert(bytes_.end(), e.begin(), e.end());
  }
  void Rr(absl::string_view owner, uint16_t type, uint32_t ttl, const std::vector<uint8_t>& rd) {
    Name(owner);
    Put16(type);
    Put16(1);
    Put16(ttl >> 16);
    Put16(ttl & 0xFFFF);
    Put16(static_cast<uint16_t>(rd.size()));
    bytes_.insert(bytes_.end(), rd.begin(), rd.end());
  }
  std::vector<uint8_t> bytes_;
};

std::vector<uint8_t> MxRdata(uint16_t pref, absl::string_view host) {
  std::vector<uint8_t> r = {static_cast<uint8_t>(pref >> 8), static_cast<uint8_t>(pref)};
  std::vector<uint8_t> n = Packet::Encode(host);
  r.insert(r.end(), n.begin(), n.end());
  return r;
}

std::vector<uint8_t> SoaRdata(uint32_t minimum) {
  std::vector<uint8_t> r = Packet::Encode("ns.example");
  std::vector<uint8_t> n = Packet::Encode("host.example");
  r.insert(r.end(), n.begin(), n.end());
  for (uint32_t v : {1u, 3600u, 600u, 86400u, minimum}) {
    for (int s = 24; s >= 0; s -= 8) r.push_back(static_cast<uint8_t>(v >> s));
  }
  return r;
}

ParsedAnswer Parse(const Packet& p, absl::string_view qname, uint16_t qtype) {
  return ParseAnswer(p.bytes().data(), p.bytes().size(), qname, qtype);
}

TEST(BuildQueryTest, SetsRdAdAndEdns) {
  absl::StatusOr<std::vector<uint8_t>> q = BuildQuery("example.com", kTypeMx);
  ASSERT_TRUE(q.ok()) << q.status();
  const std::vector<uint8_t>& b = *q;
  EXPECT_EQ(b[2] & 0x01, 0x01);  // RD
  EXPECT_EQ(b[3] & 0x20, 0x20);  // AD
  EXPECT_EQ(b[11], 1);           // ARCOUNT: the OPT RR
  EXPECT_EQ(b[b.size() - 10], 0);  // OPT type 41
  EXPECT_EQ(b[b.size() - 9], 41);
  EXPECT_EQ((b[b.size() - 8] << 8) | b[b.size() - 7], kEdnsUdpSize);
  EXPECT_EQ(b[b.size() - 4] & 0x80, 0);  // DO off by default
  q = BuildQuery("example.com", kTypeMx, /*dnssec_ok=*/true);
  EXPECT_EQ((*q)[q->size() - 4] & 0x80, 0x80);
}

TEST(ParseAnswerTest, MxRecordsTtlAndAd) {
  Packet p("Example.COM", kTypeMx, 0, /*ad=*/true);
  p.Answer("example.com", kTypeMx, 300, MxRdata(10, "MX1.example.com"))
      .Answer("example.com", kTypeMx, 120, MxRdata(20, "mx2.example.com"))
      .Answer("example.com", kTypeTxt, 5, {3, 'a', 'b', 'c'});  // other type: ignored
  ParsedAnswer a = Parse(p, "example.com", kTypeMx);
  EXPECT_EQ(a.rcode, 0);
  EXPECT_TRUE(a.authenticated);
  ASSERT_EQ(a.records, 2u);
  EXPECT_EQ(a.ttl, 120u);
  EXPECT_EQ(a.mx[0].exchange, "mx1.example.com");
  EXPECT_EQ(a.mx[1].preference, 20);
}

TEST(ParseAnswerTest, NullMxIsTheEmptyName) {
  Packet p("example.com", kTypeMx, 0);
  p.Answer("example.com", kTypeMx, 300, {0, 0, 0});
  ParsedAnswer a = Parse(p, "example.com", kTypeMx);
  ASSERT_EQ(a.mx.size(), 1u);
  EXPECT_EQ(a.mx[0].exchange, "");
}

TEST(ParseAnswerTest, FollowsCnameChainAndTakesMinTtl) {
  Packet p("www.example.com", kTypeA, 0);
  p.Answer("www.example.com", kTypeCname, 50, Packet::Encode("real.example.net"))
      .Answer("real.example.net", kTypeA, 3000, {127, 0, 0, 1})
      .Answer("other.example.net", kTypeA, 10, {127, 0, 0, 2});  // not in the chain
  ParsedAnswer a = Parse(p, "www.example.com", kTypeA);
  EXPECT_EQ(a.canonical, "real.example.net");
  ASSERT_EQ(a.addresses.size(), 1u);
  EXPECT_EQ(a.ttl, 50u);
}

TEST(ParseAnswerTest, CnameLoopTerminates) {
  Packet p("a.example", kTypeA, 0);
  p.Answer("a.example", kTypeCname, 50, Packet::Encode("b.example"))
      .Answer("b.example", kTypeCname, 50, Packet::Encode("a.example"));
  ParsedAnswer a = Parse(p, "a.example", kTypeA);
  EXPECT_EQ(a.rcode, 0);
  EXPECT_EQ(a.records, 0u);
  EXPECT_EQ(a.cname_error, "CNAME loop: a.example -> b.example -> a.example");
}

TEST(ParseAnswerTest, CnameChainLongerThanTheLimit) {
  Packet p("c0.example", kTypeA, 0);
  for (int i = 0; i <= kMaxCnameHops; ++i) {
    p.Answer(absl::StrCat("c", i, ".example"), kTypeCname, 50,
             Packet::Encode(absl::StrCat("c", i + 1, ".example")));
  }
  ParsedAnswer a = Parse(p, "c0.example", kTypeA);
  EXPECT_EQ(a.records, 0u);
  EXPECT_NE(a.cname_error.find("CNAME chain longer than 16"), std::string::npos) << a.cname_error;
  // Exactly the limit is fine.
  Packet q("c0.example", kTypeA, 0);
  for (int i = 0; i < kMaxCnameHops; ++i) {
    q.Answer(absl::StrCat("c", i, ".example"), kTypeCname, 50,
             Packet::Encode(absl::StrCat("c", i + 1, ".example")));
  }
  q.Answer(absl::StrCat("c", kMaxCnameHops, ".example"), kTypeA, 50, {127, 0, 0, 1});
  a = Parse(q, "c0.example", kTypeA);
  EXPECT_EQ(a.records, 1u);
  EXPECT_EQ(a.cname_error, "");
}

TEST(ParseAnswerTest, NegativeTtlFromSoa) {
  Packet p("nope.example", kTypeMx, 3);
  p.Authority("example", kTypeSoa, 900, SoaRdata(60));
  ParsedAnswer a = Parse(p, "nope.example", kTypeMx);
  EXPECT_EQ(a.rcode, 3);
  ASSERT_TRUE(a.negative_ttl.has_value());
  EXPECT_EQ(*a.negative_ttl, 60u);  // RFC 2308 §5: min(SOA TTL, MINIMUM)
}

TEST(ParseAnswerTest, TlsaAndTxt) {
  Packet p("_25._tcp.mx.example", kTypeTlsa, 0);
  p.Answer("_25._tcp.mx.example", kTypeTlsa, 300, {3, 1, 1, 0xAB, 0xCD});
  ParsedAnswer a = Parse(p, "_25._tcp.mx.example", kTypeTlsa);
  ASSERT_EQ(a.tlsa.size(), 1u);
  EXPECT_EQ(a.tlsa[0].usage, 3);
  EXPECT_EQ(a.tlsa[0].data, "\xAB\xCD");

  Packet t("_mta-sts.example", kTypeTxt, 0);
  t.Answer("_mta-sts.example", kTypeTxt, 300, {3, 'v', '=', 'S', 2, 'T', 'S'});
  a = Parse(t, "_mta-sts.example", kTypeTxt);
  ASSERT_EQ(a.txt.size(), 1u);
  EXPECT_EQ(a.txt[0], "v=STS");
}

TEST(ParseAnswerTest, TtlWithTopBitIsZero) {
  Packet p("example.com", kTypeA, 0);
  p.Answer("example.com", kTypeA, 0x80000001u, {127, 0, 0, 1});
  EXPECT_EQ(Parse(p, "example.com", kTypeA).ttl, 0u);  // RFC 2181 §8
}

struct MalformedCase {
  const char* what;
  std::vector<uint8_t> bytes;
};

TEST(ParseAnswerTest, MalformedAnswersNeverCrash) {
  Packet good("example.com", kTypeA, 0);
  good.Answer("example.com", kTypeA, 60, {127, 0, 0, 1});
  std::vector<MalformedCase> cases = {
      {"empty", {}},
      {"short header", {0x12, 0x34, 0x81}},
      {"QR clear", {0x12, 0x34, 0x01, 0x80, 0, 0, 0, 0, 0, 0, 0, 0}},
      {"ANCOUNT beyond the end", {0x12, 0x34, 0x81, 0x80, 0, 0, 0, 9, 0, 0, 0, 0}},
      {"pointer loop", {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1}},
  };
  // Every truncation of a good answer.
  for (size_t n = 12; n < good.bytes().size(); ++n) {
    cases.push_back({"truncated", std::vector<uint8_t>(good.bytes().begin(),
                                                       good.bytes().begin() + n)});
  }
  for (const MalformedCase& c : cases) {
    ParsedAnswer a = ParseAnswer(c.bytes.data(), c.bytes.size(), "example.com", kTypeA);
    EXPECT_EQ(a.records, 0u) << c.what;
    if (c.bytes.size() < 12) {
      EXPECT_EQ(a.rcode, -1) << c.what;
    }
  }
  // A wrong-length A record is skipped, not trusted.
  Packet bad("example.com", kTypeA, 0);
  bad.Answer("example.com", kTypeA, 60, {127, 0, 0});
  EXPECT_EQ(Parse(bad, "example.com", kTypeA).records, 0u);
}

struct NameCase {
  const char* input;
  const char* expected;  // nullptr: rejected
};

TEST(NormalizeNameTest, Table) {
  const NameCase cases[] = {
      {"Example.COM", "example.com"},
      {"example.com.", "example.com"},
      {"b\xC3\xBC" "cher.example", "xn--bcher-kva.example"},    // RFC 3492 example
      {"fa\xC3\x9F.de", "xn--fa-hia.de"},                       // UTS #46 non-transitional
      {"\xE4\xBE\x8B\xE5\xAD\x90.test", "xn--fsqu00a.test"},    // 例子.test
      {"_25._tcp.mx.example", "_25._tcp.mx.example"},
      {"", nullptr},
      {".", nullptr},
      {"a..b", nullptr},
      {"has space.example", nullptr},
      {"127.0.0.1", nullptr},
      {"[127.0.0.1]", nullptr},
      {"::1", nullptr},
      {"\xFF.example", nullptr},
      {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", nullptr},
  };
  for (const NameCase& c : cases) {
    absl::StatusOr<std::string> n = NormalizeName(c.input);
    if (c.expected == nullptr) {
      EXPECT_FALSE(n.ok()) << c.input << " -> " << (n.ok() ? *n : "");
    } else {
      ASSERT_TRUE(n.ok()) << c.input << ": " << n.status();
      EXPECT_EQ(*n, c.expected);
    }
  }
}

}  // namespace
}  // namespace mxb::dns_wire
