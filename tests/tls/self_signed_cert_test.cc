#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <gtest/gtest.h>

#include <ctime>
#include <set>
#include <string>

#include "tests/tls/tls_test_util.h"
#include "tls/tls_session.h"

namespace mxb {
namespace {

using testing_tls::ClientCtx;
using testing_tls::ClientOpts;
using testing_tls::MakeCert;
using testing_tls::PumpHandshake;
using testing_tls::ServerCtx;
using testing_tls::WriteTempFile;

struct X509Deleter {
  void operator()(WOLFSSL_X509* x) const { wolfSSL_X509_free(x); }
};
using X509Ptr = std::unique_ptr<WOLFSSL_X509, X509Deleter>;

X509Ptr Parse(const std::string& pem) {
  return X509Ptr(wolfSSL_X509_load_certificate_buffer(
      reinterpret_cast<const unsigned char*>(pem.data()), static_cast<int>(pem.size()),
      WOLFSSL_FILETYPE_PEM));
}

std::set<std::string> AltNames(WOLFSSL_X509* x509) {
  std::set<std::string> names;
  while (const char* name = wolfSSL_X509_get_next_altname(x509)) names.insert(name);
  return names;
}

class SelfSignedCertTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { TlsGlobalInit(); }
};

TEST_F(SelfSignedCertTest, ParsesWithNamesValidityAndKeyType) {
  const time_t before = time(nullptr);
  const GeneratedCert cert =
      MakeCert("sink.example", {"mx1.example.com", "mx2.example.net", "*.wild.example"});
  EXPECT_EQ(cert.cert_pem.rfind("-----BEGIN CERTIFICATE-----", 0), 0u);
  EXPECT_EQ(cert.key_pem.rfind("-----BEGIN EC PRIVATE KEY-----", 0), 0u);

  X509Ptr x509 = Parse(cert.cert_pem);
  ASSERT_NE(x509, nullptr);
  // wolfSSL_X509_get_subjectCN exists only with KEEP_PEER_CERT (off in the bundled build).
  char cn[64] = {};
  ASSERT_GT(wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(x509.get()),
                                              NID_commonName, cn, sizeof(cn)),
            0);
  EXPECT_STREQ(cn, "sink.example");
  EXPECT_EQ(AltNames(x509.get()),
            (std::set<std::string>{"mx1.example.com", "mx2.example.net", "*.wild.example"}));
  EXPECT_EQ(wolfSSL_X509_get_isCA(x509.get()), 1);
  EXPECT_EQ(wolfSSL_X509_get_pubkey_type(x509.get()), ECDSAk);

  // notBefore = now - 1 h, notAfter = notBefore + 365 days.
  time_t t = before - 2 * 3600;
  EXPECT_EQ(wolfSSL_X509_cmp_time(wolfSSL_X509_get_notBefore(x509.get()), &t), 1);
  t = before - 3600 + 60;
  EXPECT_EQ(wolfSSL_X509_cmp_time(wolfSSL_X509_get_notBefore(x509.get()), &t), -1);
  t = before + 364 * 86400;
  EXPECT_EQ(wolfSSL_X509_cmp_time(wolfSSL_X509_get_notAfter(x509.get()), &t), 1);
  t = before + 365 * 86400;
  EXPECT_EQ(wolfSSL_X509_cmp_time(wolfSSL_X509_get_notAfter(x509.get()), &t), -1);
}

TEST_F(SelfSignedCertTest, EachSanNameVerifiesAndOthersFail) {
  const GeneratedCert cert = MakeCert("sink.example", {"mx1.example.com", "mx2.example.net"});
  const std::string ca = WriteTempFile("san_ca.pem", cert.cert_pem);
  auto server_ctx = ServerCtx(cert);
  auto client_ctx = ClientCtx(ClientOpts(true, ca));
  ASSERT_TRUE(server_ctx && client_ctx);
  struct Case {
    const char* name;
    bool ok;
  };
  for (const Case& c : {Case{"mx1.example.com", true}, Case{"mx2.example.net", true},
                        Case{"MX1.EXAMPLE.COM", true},  // RFC 6125 §6.4.1: case-insensitive
                        Case{"mx3.example.com", false}, Case{"example.com", false},
                        Case{"x.mx1.example.com", false}}) {
    SCOPED_TRACE(c.name);
    auto client = client_ctx->NewSession(c.name);
    auto server = server_ctx->NewSession();
    const auto r = PumpHandshake(client.get(), server.get());
    EXPECT_EQ(r.client, c.ok ? TlsStatus::kOk : TlsStatus::kError) << client->last_error();
  }
}

TEST_F(SelfSignedCertTest, NoSanNamesFallsBackToCommonName) {
  const GeneratedCert cert = MakeCert("only-cn.example", {});
  X509Ptr x509 = Parse(cert.cert_pem);
  ASSERT_NE(x509, nullptr);
  EXPECT_EQ(AltNames(x509.get()), (std::set<std::string>{"only-cn.example"}));
}

TEST_F(SelfSignedCertTest, ManyNamesUseLongFormDerLengths) {
  std::vector<std::string> names;
  for (int i = 0; i < 40; ++i) names.push_back("host" + std::to_string(i) + ".example.org");
  const GeneratedCert cert = MakeCert("many.example.org", names);
  X509Ptr x509 = Parse(cert.cert_pem);
  ASSERT_NE(x509, nullptr);
  EXPECT_EQ(AltNames(x509.get()).size(), names.size());
}

TEST_F(SelfSignedCertTest, TwoCertsDiffer) {
  const GeneratedCert a = MakeCert("a.example", {"a.example"});
  const GeneratedCert b = MakeCert("a.example", {"a.example"});
  EXPECT_NE(a.cert_pem, b.cert_pem);
  EXPECT_NE(a.key_pem, b.key_pem);
}

TEST_F(SelfSignedCertTest, RejectsBadInput) {
  EXPECT_FALSE(GenerateSelfSignedCert("", {"a.example"}).ok());
  EXPECT_FALSE(GenerateSelfSignedCert(std::string(64, 'a'), {"a.example"}).ok());
  EXPECT_FALSE(GenerateSelfSignedCert("a.example", {"a.example"}, 0).ok());
  EXPECT_FALSE(GenerateSelfSignedCert("a.example", {"has space.example"}).ok());
  EXPECT_FALSE(GenerateSelfSignedCert("a.example", {""}).ok());
}

}  // namespace
}  // namespace mxb
