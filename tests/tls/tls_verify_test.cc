// Per-session verification (PKIX + RFC 6125), failure classes and session resumption, all over
// in-memory handshakes against a server context made by TlsContext::NewServer (what the sink
// uses).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/tls/tls_test_util.h"
#include "tls/policy.h"
#include "tls/tls_session.h"

namespace mxb {
namespace {

using testing_tls::ClientCtx;
using testing_tls::ClientOpts;
using testing_tls::PumpHandshake;
using testing_tls::ServerCtx;
using testing_tls::Transfer;
using testing_tls::WriteTempFile;

// ---------------------------------------------------------------------------------------------
// RFC 6125 name matching

TEST(CertificateName, Table) {
  struct Case {
    const char* pattern;
    const char* host;
    bool match;
  };
  const Case cases[] = {
      {"mx.example.com", "mx.example.com", true},
      {"MX.Example.COM", "mx.example.com", true},  // ASCII case-insensitive
      {"mx.example.com", "MX.EXAMPLE.COM", true},
      {"mx.example.com.", "mx.example.com", true},  // one trailing dot ignored either side
      {"mx.example.com", "mx.example.com.", true},
      {"mx.example.com..", "mx.example.com", false},
      {"mx.example.com", "mx2.example.com", false},
      {"mx.example.com", "example.com", false},
      {"example.com", "mx.example.com", false},
      {"", "mx.example.com", false},
      {"mx.example.com", "", false},
      // Wildcards: complete left-most label only, exactly one label.
      {"*.example.com", "a.example.com", true},
      {"*.EXAMPLE.com", "A.example.COM", true},
      {"*.example.com", "a.b.example.com", false},
      {"*.example.com", "example.com", false},
      {"*.example.com", ".example.com", false},
      {"*.example.com", "a.example.com.", true},
      {"f*.example.com", "foo.example.com", false},  // partial-label wildcards refused
      {"*o.example.com", "foo.example.com", false},
      {"f*o.example.com", "foo.example.com", false},
      {"a.*.example.com", "a.b.example.com", false},  // not left-most
      {"*.*.example.com", "a.b.example.com", false},
      {"**.example.com", "a.example.com", false},
      {"*", "localhost", false},
      {"*.com", "example.com", false},  // no wildcard over a single remaining label
      {"*.", "a.", false},
      {"*.example.com", "*.example.com", false},  // the host is never a pattern
      // IDN: A-labels compare as ASCII; U-labels in a certificate never match.
      {"xn--bcher-kva.example", "xn--bcher-kva.example", true},
      {"XN--BCHER-KVA.example", "xn--bcher-kva.example", true},
      {"*.xn--bcher-kva.example", "mx.xn--bcher-kva.example", true},
      {"*.example.com", "xn--bcher-kva.example.com", true},
      {"xn--*.example.com", "xn--bcher-kva.example.com", false},
      {"b\xc3\xbc" "cher.example", "xn--bcher-kva.example", false},
      {"b\xc3\xbc" "cher.example", "b\xc3\xbc" "cher.example", false},
      // Junk
      {"mx.example.com\x01", "mx.example.com", false},
      {"mx.example.com", "mx..example.com", false},
      {"mx example.com", "mx example.com", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "pattern=\"" << c.pattern << "\" host=\"" << c.host
                                      << "\"");
    EXPECT_EQ(MatchesCertificateName(c.pattern, c.host), c.match);
  }
  EXPECT_TRUE(MatchesAnyCertificateName({"a.test", "*.b.test"}, "x.b.test"));
  EXPECT_FALSE(MatchesAnyCertificateName({}, "x.b.test"));
  // An embedded NUL (the classic "www.bank.com\0.evil.com" certificate) never matches.
  EXPECT_FALSE(MatchesCertificateName(std::string("mx.example.com\0.evil.test", 25),
                                      "mx.example.com"));
}

// ---------------------------------------------------------------------------------------------
// Handshakes with a private CA

GeneratedCert Make(const CertOptions& o) {
  absl::StatusOr<GeneratedCert> c = GenerateSelfSignedCert(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : GeneratedCert{};
}

CertOptions Leaf(const std::string& cn, const std::vector<std::string>& names,
                 const GeneratedCert* issuer) {
  CertOptions o;
  o.common_name = cn;
  o.dns_names = names;
  o.is_ca = false;
  o.issuer = issuer;
  return o;
}

// The server presents leaf + CA (a chain, the way real MX hosts do).
std::unique_ptr<TlsContext> ChainServer(const GeneratedCert& leaf, const GeneratedCert& ca,
                                        bool tls12_only = false) {
  GeneratedCert chain = leaf;
  chain.cert_pem += ca.cert_pem;
  return ServerCtx(chain, tls12_only);
}

SessionParams Strict(const TlsSessionTicket* resume = nullptr) {
  SessionParams p;
  p.verify = true;
  p.resume = resume;
  return p;
}

class TlsVerifyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    TlsGlobalInit();
    CertOptions ca;
    ca.common_name = "mxburst test CA";
    ca.dns_names = {"ca.invalid"};
    ca_ = new GeneratedCert(Make(ca));
    CertOptions other;
    other.common_name = "other CA";
    other.dns_names = {"other-ca.invalid"};
    other_ca_ = new GeneratedCert(Make(other));
    ca_file_ = new std::string(WriteTempFile("tls_verify_ca.pem", ca_->cert_pem));
    good_ = new GeneratedCert(
        Make(Leaf("mx.example.test", {"mx.example.test", "*.wild.example.test"}, ca_)));
  }
  static void TearDownTestSuite() {
    delete ca_;
    delete other_ca_;
    delete ca_file_;
    delete good_;
  }
  // One shared client context that does not verify by default; strictness per session.
  std::unique_ptr<TlsContext> Client(bool tls13_only = false) {
    return ClientCtx(ClientOpts(false, *ca_file_, tls13_only));
  }

  static GeneratedCert* ca_;
  static GeneratedCert* other_ca_;
  static std::string* ca_file_;
  static GeneratedCert* good_;
};
GeneratedCert* TlsVerifyTest::ca_ = nullptr;
GeneratedCert* TlsVerifyTest::other_ca_ = nullptr;
std::string* TlsVerifyTest::ca_file_ = nullptr;
GeneratedCert* TlsVerifyTest::good_ = nullptr;

struct Outcome {
  TlsStatus client;
  TlsFailure failure;
  bool verified;
  std::string error;
};

Outcome Connect(TlsContext& client_ctx, TlsContext& server_ctx, const std::string& name,
                const SessionParams& params) {
  auto client = client_ctx.NewSession(name, params);
  auto server = server_ctx.NewSession();
  EXPECT_TRUE(client && server);
  if (!client || !server) return Outcome{TlsStatus::kError, TlsFailure::kNone, false, ""};
  const auto r = PumpHandshake(client.get(), server.get());
  return Outcome{r.client, client->failure(), client->verified(), client->last_error()};
}

TEST_F(TlsVerifyTest, StrictSessionVerifiesChainAndName) {
  auto server = ChainServer(*good_, *ca_);
  auto client = Client();
  ASSERT_TRUE(server && client);
  for (const char* name :
       {"mx.example.test", "MX.Example.Test", "mx.example.test.", "a.wild.example.test"}) {
    SCOPED_TRACE(name);
    const Outcome o = Connect(*client, *server, name, Strict());
    EXPECT_EQ(o.client, TlsStatus::kOk) << o.error;
    EXPECT_EQ(o.failure, TlsFailure::kNone);
    EXPECT_TRUE(o.verified);
  }
}

TEST_F(TlsVerifyTest, OpportunisticSessionOnTheSameContextChecksNothing) {
  auto server = ChainServer(*good_, *ca_);
  auto client = Client();
  const Outcome o = Connect(*client, *server, "unrelated.example", SessionParams());
  EXPECT_EQ(o.client, TlsStatus::kOk) << o.error;
  EXPECT_EQ(o.failure, TlsFailure::kNone);
  EXPECT_FALSE(o.verified);
  // An untrusted self-signed server is fine too when not verifying.
  CertOptions self;
  self.common_name = "self.example";
  auto self_server = ServerCtx(Make(self));
  EXPECT_EQ(Connect(*client, *self_server, "mx.example.test", SessionParams()).client,
            TlsStatus::kOk);
}

TEST_F(TlsVerifyTest, WrongNameIsHostMismatch) {
  auto server = ChainServer(*good_, *ca_);
  auto client = Client();
  for (const char* name : {"other.example.test", "a.b.wild.example.test", "wild.example.test",
                           "example.test"}) {
    SCOPED_TRACE(name);
    const Outcome o = Connect(*client, *server, name, Strict());
    EXPECT_EQ(o.client, TlsStatus::kError);
    EXPECT_EQ(o.failure, TlsFailure::kCertificateHostMismatch) << o.error;
    EXPECT_FALSE(o.verified);
    EXPECT_NE(o.error.find("certificate-host-mismatch"), std::string::npos) << o.error;
    EXPECT_NE(o.error.find("mx.example.test"), std::string::npos) << o.error;
  }
}

TEST_F(TlsVerifyTest, CommonNameIsNeverUsed) {
  auto client = Client();
  // CN-only certificate (no SAN at all): wolfSSL_check_domain_name would accept it; we do not.
  CertOptions cn_only = Leaf("mx.example.test", {}, ca_);
  cn_only.no_san = true;
  auto server = ChainServer(Make(cn_only), *ca_);
  Outcome o = Connect(*client, *server, "mx.example.test", Strict());
  EXPECT_EQ(o.client, TlsStatus::kError);
  EXPECT_EQ(o.failure, TlsFailure::kCertificateHostMismatch) << o.error;
  EXPECT_NE(o.error.find("no subjectAltName"), std::string::npos) << o.error;

  // CN matches, SAN does not: mismatch.
  auto server2 = ChainServer(Make(Leaf("mx.example.test", {"other.example.test"}, ca_)), *ca_);
  o = Connect(*client, *server2, "mx.example.test", Strict());
  EXPECT_EQ(o.failure, TlsFailure::kCertificateHostMismatch) << o.error;

  // SAN matches, CN is something else: fine.
  auto server3 = ChainServer(Make(Leaf("Some Org MX", {"mx.example.test"}, ca_)), *ca_);
  o = Connect(*client, *server3, "mx.example.test", Strict());
  EXPECT_EQ(o.client, TlsStatus::kOk) << o.error;
  EXPECT_TRUE(o.verified);
}

TEST_F(TlsVerifyTest, ExpiredAndNotYetValidAreCertificateExpired) {
  auto client = Client();
  CertOptions expired = Leaf("mx.example.test", {"mx.example.test"}, ca_);
  expired.not_before = absl::Now() - absl::Hours(24 * 30);
  expired.not_after = absl::Now() - absl::Hours(24);
  auto server = ChainServer(Make(expired), *ca_);
  Outcome o = Connect(*client, *server, "mx.example.test", Strict());
  EXPECT_EQ(o.client, TlsStatus::kError);
  EXPECT_EQ(o.failure, TlsFailure::kCertificateExpired) << o.error;
  EXPECT_NE(o.error.find("certificate-expired"), std::string::npos) << o.error;

  CertOptions future = Leaf("mx.example.test", {"mx.example.test"}, ca_);
  future.not_before = absl::Now() + absl::Hours(24);
  future.not_after = absl::Now() + absl::Hours(24 * 30);
  auto server2 = ChainServer(Make(future), *ca_);
  o = Connect(*client, *server2, "mx.example.test", Strict());
  EXPECT_EQ(o.client, TlsStatus::kError);
  EXPECT_EQ(o.failure, TlsFailure::kCertificateExpired) << o.error;

  // Not verifying: the expired certificate still encrypts (opportunistic TLS).
  EXPECT_EQ(Connect(*client, *server, "mx.example.test", SessionParams()).client,
            TlsStatus::kOk);
}

TEST_F(TlsVerifyTest, UntrustedIssuerIsValidationFailure) {
  auto client = Client();
  auto server =
      ChainServer(Make(Leaf("mx.example.test", {"mx.example.test"}, other_ca_)), *other_ca_);
  const Outcome o = Connect(*client, *server, "mx.example.test", Strict());
  EXPECT_EQ(o.client, TlsStatus::kError);
  EXPECT_EQ(o.failure, TlsFailure::kValidationFailure) << o.error;
  EXPECT_NE(o.error.find("validation-failure"), std::string::npos) << o.error;

  // Self-signed leaf with the right name, not in the trust store.
  CertOptions self;
  self.common_name = "mx.example.test";
  auto self_server = ServerCtx(Make(self));
  EXPECT_EQ(Connect(*client, *self_server, "mx.example.test", Strict()).failure,
            TlsFailure::kValidationFailure);
}

TEST_F(TlsVerifyTest, LogOnlyCompletesAndReportsTheViolation) {
  auto client = Client();
  auto server = ChainServer(*good_, *ca_);
  SessionParams p = Strict();
  p.log_only = true;
  Outcome o = Connect(*client, *server, "other.example.test", p);
  EXPECT_EQ(o.client, TlsStatus::kOk) << o.error;
  EXPECT_EQ(o.failure, TlsFailure::kCertificateHostMismatch);
  EXPECT_FALSE(o.verified);
  EXPECT_NE(o.error.find("log-only"), std::string::npos) << o.error;

  auto untrusted =
      ChainServer(Make(Leaf("mx.example.test", {"mx.example.test"}, other_ca_)), *other_ca_);
  o = Connect(*client, *untrusted, "mx.example.test", p);
  EXPECT_EQ(o.client, TlsStatus::kOk) << o.error;
  EXPECT_EQ(o.failure, TlsFailure::kValidationFailure);

  o = Connect(*client, *server, "mx.example.test", p);
  EXPECT_EQ(o.client, TlsStatus::kOk) << o.error;
  EXPECT_EQ(o.failure, TlsFailure::kNone);
  EXPECT_TRUE(o.verified);
}

TEST_F(TlsVerifyTest, ContextLevelVerifyPeerKeepsWorking) {
  auto client = ClientCtx(ClientOpts(true, *ca_file_));
  auto server = ChainServer(*good_, *ca_);
  auto ok = client->NewSession("mx.example.test");
  auto s1 = server->NewSession();
  EXPECT_EQ(PumpHandshake(ok.get(), s1.get()).client, TlsStatus::kOk) << ok->last_error();
  EXPECT_TRUE(ok->verified());
  auto bad = client->NewSession("other.example.test");
  auto s2 = server->NewSession();
  EXPECT_EQ(PumpHandshake(bad.get(), s2.get()).client, TlsStatus::kError);
  EXPECT_EQ(bad->failure(), TlsFailure::kCertificateHostMismatch);
}

TEST_F(TlsVerifyTest, NonCertificateFailureIsHandshakeFailed) {
  // TLS 1.3-only client against a TLS 1.2-only server: no common version.
  auto client = Client(/*tls13_only=*/true);
  auto server = ChainServer(*good_, *ca_, /*tls12_only=*/true);
  const Outcome o = Connect(*client, *server, "mx.example.test", Strict());
  EXPECT_EQ(o.client, TlsStatus::kError);
  EXPECT_EQ(o.failure, TlsFailure::kHandshakeFailed) << o.error;
}

// ---------------------------------------------------------------------------------------------
// Resumption

struct Established {
  std::unique_ptr<TlsSession> client;
  std::unique_ptr<TlsSession> server;
};

// Handshake, then one server->client reply (it carries the TLS 1.3 NewSessionTicket).
Established Establish(TlsContext& client_ctx, TlsContext& server_ctx, const std::string& name,
                const SessionParams& params, bool read_reply = true) {
  Established e;
  e.client = client_ctx.NewSession(name, params);
  e.server = server_ctx.NewSession();
  const auto r = PumpHandshake(e.client.get(), e.server.get());
  EXPECT_EQ(r.client, TlsStatus::kOk) << e.client->last_error();
  EXPECT_EQ(r.server, TlsStatus::kOk) << e.server->last_error();
  if (read_reply) {
    EXPECT_EQ(e.server->Write("250 mx.example.test\r\n"), TlsStatus::kOk);
    std::string plain;
    EXPECT_EQ(Transfer(e.server.get(), e.client.get(), &plain), TlsStatus::kWantIo);
    EXPECT_EQ(plain, "250 mx.example.test\r\n");
  }
  return e;
}

class TlsResumeTest : public TlsVerifyTest, public ::testing::WithParamInterface<bool> {
 protected:
  bool tls12() const { return GetParam(); }
};

TEST_P(TlsResumeTest, SecondSessionResumesWithSavedTicket) {
  auto server = ChainServer(*good_, *ca_, tls12());
  auto client = Client();
  Established first = Establish(*client, *server, "mx.example.test", Strict());
  EXPECT_FALSE(first.client->resumed());
  EXPECT_EQ(first.client->version(), tls12() ? "TLSv1.2" : "TLSv1.3");
  std::shared_ptr<TlsSessionTicket> ticket = first.client->SaveSession();
  ASSERT_NE(ticket, nullptr);
  EXPECT_TRUE(ticket->verified());
  EXPECT_EQ(ticket->server_name(), "mx.example.test");
  EXPECT_EQ(ticket->version(), tls12() ? "TLSv1.2" : "TLSv1.3");
  first.client.reset();  // the ticket outlives its connection

  Established second = Establish(*client, *server, "mx.example.test", Strict(ticket.get()));
  EXPECT_TRUE(second.client->resumed());
  EXPECT_TRUE(second.server->resumed());
  EXPECT_TRUE(second.client->verified());  // inherited from the verified ticket
  EXPECT_EQ(second.client->failure(), TlsFailure::kNone);
  // Data still flows on the resumed session.
  ASSERT_EQ(second.client->Write("QUIT\r\n"), TlsStatus::kOk);
  std::string plain;
  EXPECT_EQ(Transfer(second.client.get(), second.server.get(), &plain), TlsStatus::kWantIo);
  EXPECT_EQ(plain, "QUIT\r\n");

  // The resumed session yields a newer ticket, which resumes again.
  std::shared_ptr<TlsSessionTicket> newer = second.client->SaveSession();
  ASSERT_NE(newer, nullptr);
  Established third = Establish(*client, *server, "mx.example.test", Strict(newer.get()));
  EXPECT_TRUE(third.client->resumed());
}

TEST_P(TlsResumeTest, StrictSessionIgnoresUnverifiedOrForeignTicket) {
  auto server = ChainServer(*good_, *ca_, tls12());
  auto client = Client();
  Established opp = Establish(*client, *server, "mx.example.test", SessionParams());
  std::shared_ptr<TlsSessionTicket> unverified = opp.client->SaveSession();
  ASSERT_NE(unverified, nullptr);
  EXPECT_FALSE(unverified->verified());
  // Opportunistic sessions may resume from it...
  SessionParams resume_opp;
  resume_opp.resume = unverified.get();
  EXPECT_TRUE(Establish(*client, *server, "mx.example.test", resume_opp).client->resumed());
  // ...a strict one makes a full, verified handshake instead.
  Established strict = Establish(*client, *server, "mx.example.test", Strict(unverified.get()));
  EXPECT_FALSE(strict.client->resumed());
  EXPECT_TRUE(strict.client->verified());

  // A ticket for another name is not offered.
  std::shared_ptr<TlsSessionTicket> verified = strict.client->SaveSession();
  ASSERT_NE(verified, nullptr);
  Established other = Establish(*client, *server, "a.wild.example.test", Strict(verified.get()));
  EXPECT_FALSE(other.client->resumed());
  EXPECT_TRUE(other.client->verified());
}

TEST_P(TlsResumeTest, TicketFromAnotherServerFallsBackToFullHandshake) {
  if (tls12()) {
    // TLS 1.2 resumes by session id from wolfSSL's process-wide server cache, so a second
    // server context in this process would resume it; another process (a restarted sink, a
    // real MX) does a full handshake, which the client handles (no RFC 5077 ticket offered).
    GTEST_SKIP() << "in-process TLS 1.2 session cache is shared by all server contexts";
  }
  auto server_a = ChainServer(*good_, *ca_, tls12());
  const GeneratedCert other_leaf =
      Make(Leaf("mx.example.test", {"mx.example.test"}, ca_));
  auto server_b = ChainServer(other_leaf, *ca_, tls12());  // e.g. the sink restarted
  auto client = Client();
  std::shared_ptr<TlsSessionTicket> ticket =
      Establish(*client, *server_a, "mx.example.test", Strict()).client->SaveSession();
  ASSERT_NE(ticket, nullptr);
  Established e = Establish(*client, *server_b, "mx.example.test", Strict(ticket.get()));
  EXPECT_FALSE(e.server->resumed()) << "server B resumed a session of server A";
  EXPECT_FALSE(e.client->resumed());
  EXPECT_TRUE(e.client->verified());
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsResumeTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Tls12" : "Tls13";
                         });

TEST_F(TlsVerifyTest, Tls13TicketOnlyAfterTheFirstRead) {
  auto server = ChainServer(*good_, *ca_);
  auto client = Client();
  Established e = Establish(*client, *server, "mx.example.test", Strict(), /*read_reply=*/false);
  ASSERT_EQ(e.client->version(), "TLSv1.3");
  // The NewSessionTicket is still in flight (the server queued it after its Finished).
  EXPECT_EQ(e.client->SaveSession(), nullptr);
  ASSERT_EQ(e.server->Write("250 ok\r\n"), TlsStatus::kOk);
  std::string plain;
  EXPECT_EQ(Transfer(e.server.get(), e.client.get(), &plain), TlsStatus::kWantIo);
  EXPECT_NE(e.client->SaveSession(), nullptr);
}

TEST_F(TlsVerifyTest, SaveSessionRefusesBeforeHandshakeAndOnServers) {
  auto server = ChainServer(*good_, *ca_);
  auto client = Client();
  auto c = client->NewSession("mx.example.test", Strict());
  EXPECT_EQ(c->SaveSession(), nullptr);
  auto s = server->NewSession();
  EXPECT_EQ(s->SaveSession(), nullptr);
}

}  // namespace
}  // namespace mxb
