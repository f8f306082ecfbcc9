// DANE TLSA matching (tls/dane.h) over certificates made by GenerateSelfSignedCert, and the
// DANE mode of TlsSession over in-memory handshakes: no CA file anywhere in this file.
#include "tls/dane.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/tls/tls_test_util.h"
#include "tls/tls_session.h"

namespace mxb {
namespace {

using testing_tls::ClientCtx;
using testing_tls::ClientOpts;
using testing_tls::PumpHandshake;
using testing_tls::PumpResult;
using testing_tls::ServerCtx;
using testing_tls::Transfer;

GeneratedCert Make(const CertOptions& o) {
  absl::StatusOr<GeneratedCert> c = GenerateSelfSignedCert(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : GeneratedCert{};
}

CertOptions Ca(const std::string& cn, const GeneratedCert* issuer = nullptr) {
  CertOptions o;
  o.common_name = cn;
  o.dns_names = {"ca.invalid"};
  o.issuer = issuer;
  return o;
}

CertOptions Leaf(const std::vector<std::string>& names, const GeneratedCert* issuer) {
  CertOptions o;
  o.common_name = names.empty() ? "leaf" : names[0];
  o.dns_names = names;
  o.is_ca = false;
  o.issuer = issuer;
  return o;
}

std::string Der(const GeneratedCert& c) {
  std::vector<std::string> der = PemCertificatesToDer(c.cert_pem);
  EXPECT_EQ(der.size(), 1u);
  return der.empty() ? std::string() : der[0];
}

// The certificates every test shares (key generation is the slow part).
struct Pki {
  GeneratedCert ca, other_ca, root, inter, expired_ca;
  GeneratedCert leaf, wild, other_name, qname_leaf, expired_leaf, rogue_leaf, deep_leaf,
      under_expired_ca, self_signed, impostor_ca, impostor_leaf;
};
const Pki& P() {
  static const Pki* pki = [] {
    TlsGlobalInit();
    auto* p = new Pki;
    p->ca = Make(Ca("dane test CA"));
    p->other_ca = Make(Ca("other CA"));
    p->root = Make(Ca("root CA"));
    p->inter = Make(Ca("intermediate CA", &p->root));
    CertOptions old = Ca("expired CA");
    old.not_before = absl::Now() - absl::Hours(24 * 400);
    old.not_after = absl::Now() - absl::Hours(24 * 30);
    p->expired_ca = Make(old);
    p->leaf = Make(Leaf({"mx.example.com"}, &p->ca));
    p->wild = Make(Leaf({"*.example.com"}, &p->ca));
    p->other_name = Make(Leaf({"mx.other.test"}, &p->ca));
    p->qname_leaf = Make(Leaf({"example.com"}, &p->ca));
    CertOptions expired = Leaf({"mx.example.com"}, &p->ca);
    expired.not_before = absl::Now() - absl::Hours(24 * 400);
    expired.not_after = absl::Now() - absl::Hours(24 * 30);
    p->expired_leaf = Make(expired);
    p->rogue_leaf = Make(Leaf({"mx.example.com"}, &p->other_ca));
    p->deep_leaf = Make(Leaf({"mx.example.com"}, &p->inter));
    p->under_expired_ca = Make(Leaf({"mx.example.com"}, &p->expired_ca));
    // Same subject name as the real CA, another key: only the signature tells them apart.
    p->impostor_ca = Make(Ca("dane test CA"));
    p->impostor_leaf = Make(Leaf({"mx.example.com"}, &p->impostor_ca));
    CertOptions self = Leaf({"whatever.invalid"}, nullptr);
    p->self_signed = Make(self);
    return p;
  }();
  return *pki;
}

DaneRecord Rec(uint8_t u, uint8_t s, uint8_t m, const GeneratedCert& c) {
  DaneRecord r;
  r.usage = u;
  r.selector = s;
  r.matching_type = m;
  r.data = TlsaAssociationData(Der(c), s, m);
  return r;
}

DaneRecord Raw(uint8_t u, uint8_t s, uint8_t m, std::string data) {
  DaneRecord r;
  r.usage = u;
  r.selector = s;
  r.matching_type = m;
  r.data = std::move(data);
  return r;
}

TEST(DaneSpki, WellFormedAndMalformed) {
  const std::string der = Der(P().leaf);
  const absl::string_view spki = CertificateSpki(der);
  // ECDSA P-256 SubjectPublicKeyInfo: SEQUENCE(89) { AlgorithmIdentifier, BIT STRING(66) }.
  ASSERT_EQ(spki.size(), 91u);
  EXPECT_EQ(static_cast<uint8_t>(spki[0]), 0x30);
  EXPECT_EQ(static_cast<uint8_t>(spki[1]), 89);
  EXPECT_TRUE(CertificateSpki("").empty());
  EXPECT_TRUE(CertificateSpki(absl::string_view(der).substr(0, der.size() / 2)).empty());
  EXPECT_TRUE(CertificateSpki(std::string("\x30\x80\x00\x00", 4)).empty());  // indefinite
  EXPECT_EQ(TlsaAssociationData(der, 1, 1).size(), 32u);
  EXPECT_EQ(TlsaAssociationData(der, 0, 2).size(), 64u);
  EXPECT_EQ(TlsaAssociationData(der, 0, 0), der);
  EXPECT_TRUE(TlsaAssociationData("junk", 0, 1).empty());
  EXPECT_TRUE(TlsaAssociationData(der, 2, 1).empty());
  EXPECT_TRUE(TlsaAssociationData(der, 1, 3).empty());
}

TEST(DaneUsable, Table) {
  const std::string d32(32, 'x'), d64(64, 'x');
  struct Case {
    DaneRecord r;
    bool usable;
  };
  const Case cases[] = {
      {Raw(3, 1, 1, d32), true},    // the common "3 1 1"
      {Raw(3, 0, 1, d32), true},
      {Raw(3, 1, 2, d64), true},
      {Raw(3, 0, 0, "cert"), true},
      {Raw(2, 0, 1, d32), true},
      {Raw(2, 1, 0, "spki"), true},
      {Raw(1, 1, 1, d32), false},   // PKIX-EE: unusable for SMTP (RFC 7672 §3.1.3)
      {Raw(0, 0, 1, d32), false},   // PKIX-TA
      {Raw(4, 1, 1, d32), false},   // unknown usage
      {Raw(3, 2, 1, d32), false},   // unknown selector
      {Raw(3, 1, 3, d32), false},   // unknown matching type
      {Raw(3, 1, 1, d64), false},   // digest of the wrong length
      {Raw(3, 1, 2, d32), false},
      {Raw(3, 1, 1, std::string(31, 'x')), false},
      {Raw(3, 1, 0, ""), false},    // empty full data
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.r.Params());
    EXPECT_EQ(IsUsableForSmtp(c.r), c.usable);
  }
  auto auth = DaneAuthority::Make({Raw(1, 1, 1, d32), Raw(3, 1, 1, d32)}, {"MX.Example.com."});
  EXPECT_EQ(auth->usable.size(), 1u);
  EXPECT_EQ(auth->unusable, 1u);
  EXPECT_EQ(auth->names, std::vector<std::string>{"mx.example.com"});
}

TEST(DaneAuthorityBinding, OrderIndependentButContentBound) {
  const std::string a(32, 'a'), b(32, 'b');
  auto x = DaneAuthority::Make({Raw(3, 1, 1, a), Raw(2, 0, 1, b)}, {"mx.example.com"});
  auto y = DaneAuthority::Make({Raw(2, 0, 1, b), Raw(3, 1, 1, a)}, {"mx.example.com"});
  auto z = DaneAuthority::Make({Raw(3, 1, 1, a)}, {"mx.example.com"});
  auto w = DaneAuthority::Make({Raw(3, 1, 1, a), Raw(2, 0, 1, b)}, {"mx2.example.com"});
  EXPECT_EQ(x->binding, y->binding);
  EXPECT_NE(x->binding, z->binding);
  EXPECT_NE(x->binding, w->binding);
  EXPECT_EQ(x->binding.size(), 64u);
}

TEST(DaneMatch, Table) {
  const Pki& p = P();
  const std::vector<std::string> mx = {"mx.example.com"};
  struct Case {
    const char* what;
    std::vector<DaneRecord> tlsa;
    std::vector<const GeneratedCert*> chain;  // [0] = server certificate
    std::vector<std::string> names;
    const char* record;  // matched record, or nullptr for no match
    const char* reason;  // expected reason when not matched
    int depth;
  };
  DaneRecord wrong = Rec(3, 1, 1, p.leaf);
  wrong.data[0] = static_cast<char>(wrong.data[0] ^ 0x01);
  const Case cases[] = {
      // DANE-EE(3): the leaf or its key, any name, any date (RFC 7672 §3.1.1).
      {"3 1 1", {Rec(3, 1, 1, p.leaf)}, {&p.leaf, &p.ca}, mx, "3 1 1", "", 0},
      {"3 0 1", {Rec(3, 0, 1, p.leaf)}, {&p.leaf}, mx, "3 0 1", "", 0},
      {"3 1 2", {Rec(3, 1, 2, p.leaf)}, {&p.leaf}, mx, "3 1 2", "", 0},
      {"3 0 0", {Rec(3, 0, 0, p.leaf)}, {&p.leaf}, mx, "3 0 0", "", 0},
      {"3 1 0", {Rec(3, 1, 0, p.leaf)}, {&p.leaf}, mx, "3 1 0", "", 0},
      {"3 1 1 ignores names", {Rec(3, 1, 1, p.self_signed)}, {&p.self_signed}, mx, "3 1 1", "", 0},
      {"3 1 1 ignores expiry", {Rec(3, 1, 1, p.expired_leaf)}, {&p.expired_leaf}, mx, "3 1 1",
       "", 0},
      {"3 1 1 wrong digest", {wrong}, {&p.leaf, &p.ca}, mx, nullptr, "tlsa-mismatch", -1},
      {"3 x x of the CA is not the leaf", {Rec(3, 1, 1, p.ca)}, {&p.leaf, &p.ca}, mx, nullptr,
       "tlsa-mismatch", -1},
      {"second record matches", {wrong, Rec(3, 0, 1, p.leaf)}, {&p.leaf}, mx, "3 0 1", "", 0},
      // DANE-TA(2): an issuer in the chain, the path to it, the name (RFC 7672 §3.2.2).
      {"2 0 1", {Rec(2, 0, 1, p.ca)}, {&p.leaf, &p.ca}, mx, "2 0 1", "", 1},
      {"2 1 1", {Rec(2, 1, 1, p.ca)}, {&p.leaf, &p.ca}, mx, "2 1 1", "", 1},
      {"2 0 2", {Rec(2, 0, 2, p.ca)}, {&p.leaf, &p.ca}, mx, "2 0 2", "", 1},
      {"2 1 0", {Rec(2, 1, 0, p.ca)}, {&p.leaf, &p.ca}, mx, "2 1 0", "", 1},
      {"2 0 1 leaf name mismatch", {Rec(2, 0, 1, p.ca)}, {&p.other_name, &p.ca}, mx, nullptr,
       "tlsa-mismatch", -1},
      {"2 0 1 wildcard", {Rec(2, 0, 1, p.ca)}, {&p.wild, &p.ca}, mx, "2 0 1", "", 1},
      {"2 0 1 wildcard covers one label", {Rec(2, 0, 1, p.ca)}, {&p.wild, &p.ca},
       {"a.mx.example.com"}, nullptr, "tlsa-mismatch", -1},
      {"2 0 1 qname as reference id", {Rec(2, 0, 1, p.ca)}, {&p.qname_leaf, &p.ca},
       {"mx.example.com", "example.com"}, "2 0 1", "", 1},
      {"2 0 1 TA not sent", {Rec(2, 0, 1, p.ca)}, {&p.leaf}, mx, nullptr, "tlsa-mismatch", -1},
      {"2 0 1 expired leaf", {Rec(2, 0, 1, p.ca)}, {&p.expired_leaf, &p.ca}, mx, nullptr,
       "tlsa-mismatch", -1},
      {"2 0 1 leaf not signed by the TA", {Rec(2, 0, 1, p.ca)}, {&p.rogue_leaf, &p.ca}, mx,
       nullptr, "tlsa-mismatch", -1},
      {"2 0 1 issuer of the same name, other key", {Rec(2, 0, 1, p.ca)},
       {&p.impostor_leaf, &p.ca}, mx, nullptr, "tlsa-mismatch", -1},
      {"2 0 1 root via intermediate", {Rec(2, 0, 1, p.root)}, {&p.deep_leaf, &p.inter, &p.root},
       mx, "2 0 1", "", 2},
      {"2 0 1 intermediate as TA", {Rec(2, 0, 1, p.inter)}, {&p.deep_leaf, &p.inter, &p.root},
       mx, "2 0 1", "", 1},
      {"2 0 1 root, intermediate missing", {Rec(2, 0, 1, p.root)}, {&p.deep_leaf, &p.root}, mx,
       nullptr, "tlsa-mismatch", -1},
      {"2 0 1 expired TA: anchor dates not checked", {Rec(2, 0, 1, p.expired_ca)},
       {&p.under_expired_ca, &p.expired_ca}, mx, "2 0 1", "", 1},
      {"DANE-TA record for the leaf itself", {Rec(2, 0, 1, p.leaf)}, {&p.leaf, &p.ca}, mx,
       nullptr, "tlsa-mismatch", -1},
      // Unusable sets (RFC 7672 §3.1.3): PKIX-EE / PKIX-TA never authenticate SMTP.
      {"PKIX-EE only", {Rec(1, 1, 1, p.leaf)}, {&p.leaf, &p.ca}, mx, nullptr, "tlsa-unusable",
       -1},
      {"PKIX-TA only", {Rec(0, 0, 1, p.ca)}, {&p.leaf, &p.ca}, mx, nullptr, "tlsa-unusable", -1},
      {"unusable + wrong usable", {Rec(1, 1, 1, p.leaf), wrong}, {&p.leaf}, mx, nullptr,
       "tlsa-mismatch", -1},
      {"empty chain", {Rec(3, 1, 1, p.leaf)}, {}, mx, nullptr, "tlsa-mismatch", -1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::vector<std::string> der;
    for (const GeneratedCert* g : c.chain) der.push_back(Der(*g));
    std::vector<absl::string_view> chain(der.begin(), der.end());
    auto auth = DaneAuthority::Make(c.tlsa, c.names);
    DaneMatch m = MatchDane(*auth, chain);
    if (c.record != nullptr) {
      EXPECT_TRUE(m.matched) << m.reason << ": " << m.detail;
      EXPECT_EQ(m.record, c.record);
      EXPECT_EQ(m.depth, c.depth);
      EXPECT_EQ(m.reason, "");
    } else {
      EXPECT_FALSE(m.matched) << m.record;
      EXPECT_EQ(m.reason, c.reason) << m.detail;
      EXPECT_FALSE(m.detail.empty());
    }
  }
}

TEST(DaneMatch, GarbageChainNeverMatches) {
  auto auth = DaneAuthority::Make({Rec(3, 1, 1, P().leaf), Rec(2, 0, 1, P().ca)},
                                  {"mx.example.com"});
  const std::string junk[] = {"", std::string(1, '\x30'), std::string("\x30\x03\x02\x01\x00", 5),
                              std::string(300, '\xff')};
  for (const std::string& j : junk) {
    std::vector<absl::string_view> chain = {j, j};
    EXPECT_FALSE(MatchDane(*auth, chain).matched);
  }
}

// ---------------------------------------------------------------------------------------------
// TlsSession in DANE mode

std::unique_ptr<TlsContext> ChainServer(const GeneratedCert& leaf, const GeneratedCert* ca,
                                        bool tls12_only = false) {
  GeneratedCert chain = leaf;
  if (ca != nullptr) chain.cert_pem += ca->cert_pem;
  return ServerCtx(chain, tls12_only);
}

struct Established {
  std::unique_ptr<TlsSession> client;
  std::unique_ptr<TlsSession> server;
  PumpResult r;
};

// Handshake, then one server->client reply when it succeeded (carries the TLS 1.3 ticket).
Established Establish(TlsContext& client_ctx, TlsContext& server_ctx, const SessionParams& params) {
  Established e;
  e.client = client_ctx.NewSession("mx.example.com", params);
  e.server = server_ctx.NewSession();
  e.r = PumpHandshake(e.client.get(), e.server.get());
  if (e.r.client == TlsStatus::kOk && e.r.server == TlsStatus::kOk) {
    EXPECT_EQ(e.server->Write("250 ok\r\n"), TlsStatus::kOk);
    std::string plain;
    EXPECT_EQ(Transfer(e.server.get(), e.client.get(), &plain), TlsStatus::kWantIo);
  }
  return e;
}

SessionParams Dane(std::shared_ptr<const DaneAuthority> auth,
                   const TlsSessionTicket* resume = nullptr, bool log_only = false) {
  SessionParams p;
  p.dane = std::move(auth);
  p.resume = resume;
  p.log_only = log_only;
  return p;
}

class DaneSessionTest : public ::testing::TestWithParam<bool> {
 protected:
  bool tls12() const { return GetParam(); }
  // A client context whose trust store can never verify our private CAs: DANE must not need it.
  std::unique_ptr<TlsContext> Client() { return ClientCtx(ClientOpts(false)); }
};

TEST_P(DaneSessionTest, DaneEeMatchAuthenticatesWithoutCaStore) {
  auto server = ChainServer(P().leaf, &P().ca, tls12());
  auto client = Client();
  auto auth = DaneAuthority::Make({Rec(3, 1, 1, P().leaf)}, {"mx.example.com"});
  Established e = Establish(*client, *server, Dane(auth));
  ASSERT_EQ(e.r.client, TlsStatus::kOk) << e.client->last_error();
  EXPECT_TRUE(e.client->verified());
  EXPECT_TRUE(e.client->dane_match().matched);
  EXPECT_EQ(e.client->dane_match().record, "3 1 1");
  EXPECT_EQ(e.client->failure(), TlsFailure::kNone);
}

TEST_P(DaneSessionTest, DaneEeIgnoresExpiryAndNames) {
  auto server = ChainServer(P().expired_leaf, nullptr, tls12());
  auto client = Client();
  auto auth = DaneAuthority::Make({Rec(3, 0, 1, P().expired_leaf)}, {"mx.unrelated.test"});
  Established e = Establish(*client, *server, Dane(auth));
  ASSERT_EQ(e.r.client, TlsStatus::kOk) << e.client->last_error();
  EXPECT_TRUE(e.client->verified());
  EXPECT_EQ(e.client->dane_match().record, "3 0 1");
}

TEST_P(DaneSessionTest, MismatchFailsTheHandshake) {
  auto server = ChainServer(P().leaf, &P().ca, tls12());
  auto client = Client();
  auto auth = DaneAuthority::Make({Rec(3, 1, 1, P().other_name)}, {"mx.example.com"});
  Established e = Establish(*client, *server, Dane(auth));
  EXPECT_EQ(e.r.client, TlsStatus::kError);
  EXPECT_FALSE(e.client->verified());
  EXPECT_EQ(e.client->failure(), TlsFailure::kValidationFailure);
  EXPECT_EQ(e.client->dane_match().reason, "tlsa-mismatch");
  EXPECT_TRUE(absl::StrContains(e.client->last_error(), "tlsa-mismatch")) << e.client->last_error();
}

TEST_P(DaneSessionTest, LogOnlyMismatchContinuesUnverified) {
  auto server = ChainServer(P().leaf, &P().ca, tls12());
  auto client = Client();
  auto auth = DaneAuthority::Make({Rec(3, 1, 1, P().other_name)}, {"mx.example.com"});
  Established e = Establish(*client, *server, Dane(auth, nullptr, /*log_only=*/true));
  ASSERT_EQ(e.r.client, TlsStatus::kOk) << e.client->last_error();
  EXPECT_FALSE(e.client->verified());
  EXPECT_EQ(e.client->dane_match().reason, "tlsa-mismatch");
}

TEST_P(DaneSessionTest, DaneTaChecksChainAndName) {
  auto client = Client();
  auto auth = DaneAuthority::Make({Rec(2, 0, 1, P().ca)}, {"mx.example.com"});
  {
    auto server = ChainServer(P().leaf, &P().ca, tls12());
    Established e = Establish(*client, *server, Dane(auth));
    ASSERT_EQ(e.r.client, TlsStatus::kOk) << e.client->last_error();
    EXPECT_TRUE(e.client->verified());
    EXPECT_EQ(e.client->dane_match().record, "2 0 1");
    EXPECT_EQ(e.client->dane_match().depth, 1);
  }
  {
    auto server = ChainServer(P().other_name, &P().ca, tls12());
    Established e = Establish(*client, *server, Dane(auth));
    EXPECT_EQ(e.r.client, TlsStatus::kError);
    EXPECT_EQ(e.client->dane_match().reason, "tlsa-mismatch");
  }
}

// Issue 12 test 9 (unit half): tickets are bound to the authentication that produced them.
TEST_P(DaneSessionTest, TicketBoundToAuthentication) {
  auto server = ChainServer(P().leaf, &P().ca, tls12());
  auto client = Client();
  auto auth = DaneAuthority::Make({Rec(3, 1, 1, P().leaf)}, {"mx.example.com"});

  // An opportunistic ticket is never resumed by a DANE session.
  Established opp = Establish(*client, *server, SessionParams());
  std::shared_ptr<TlsSessionTicket> opp_ticket = opp.client->SaveSession();
  ASSERT_NE(opp_ticket, nullptr);
  EXPECT_EQ(opp_ticket->authentication(), "");
  Established d1 = Establish(*client, *server, Dane(auth, opp_ticket.get()));
  ASSERT_EQ(d1.r.client, TlsStatus::kOk) << d1.client->last_error();
  EXPECT_FALSE(d1.client->resumed());
  EXPECT_TRUE(d1.client->verified());

  // A DANE ticket resumes a DANE session under the same records, which stays verified.
  std::shared_ptr<TlsSessionTicket> dane_ticket = d1.client->SaveSession();
  ASSERT_NE(dane_ticket, nullptr);
  EXPECT_EQ(dane_ticket->authentication(), "dane:" + auth->binding);
  EXPECT_EQ(dane_ticket->dane_record(), "3 1 1");
  Established d2 = Establish(*client, *server, Dane(auth, dane_ticket.get()));
  ASSERT_EQ(d2.r.client, TlsStatus::kOk) << d2.client->last_error();
  EXPECT_TRUE(d2.client->resumed());
  EXPECT_TRUE(d2.client->verified());
  EXPECT_EQ(d2.client->dane_match().record, "3 1 1");

  // Other TLSA records (a key rollover): full handshake, authenticated anew.
  auto rolled = DaneAuthority::Make({Rec(3, 1, 1, P().leaf), Rec(3, 1, 1, P().wild)},
                                    {"mx.example.com"});
  Established d3 = Establish(*client, *server, Dane(rolled, dane_ticket.get()));
  ASSERT_EQ(d3.r.client, TlsStatus::kOk) << d3.client->last_error();
  EXPECT_FALSE(d3.client->resumed());

  // A PKIX-verifying session does not take a DANE ticket either (different authority).
  SessionParams pkix;
  pkix.verify = true;
  pkix.log_only = true;  // no CA for this chain: only the resumption decision matters here
  pkix.resume = dane_ticket.get();
  Established p1 = Establish(*client, *server, pkix);
  EXPECT_FALSE(p1.client->resumed());

  // An opportunistic session may still resume the DANE ticket (it needs no authentication).
  SessionParams any;
  any.resume = dane_ticket.get();
  EXPECT_TRUE(Establish(*client, *server, any).client->resumed());
}

INSTANTIATE_TEST_SUITE_P(Versions, DaneSessionTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("Tls12") : std::string("Tls13");
                         });

}  // namespace
}  // namespace mxb
