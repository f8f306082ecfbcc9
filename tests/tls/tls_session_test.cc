#include "tls/tls_session.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/tls/tls_test_util.h"

namespace mxb {
namespace {

using testing_tls::ClientCtx;
using testing_tls::ClientOpts;
using testing_tls::MakeCert;
using testing_tls::PumpHandshake;
using testing_tls::ServerCtx;
using testing_tls::ServerOpts;
using testing_tls::Transfer;
using testing_tls::WriteTempFile;

class TlsSessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    TlsGlobalInit();
    cert_ = new GeneratedCert(MakeCert("sink.test", {"sink.test", "mx.sink.test"}));
  }
  static void TearDownTestSuite() {
    delete cert_;
    cert_ = nullptr;
  }
  static GeneratedCert* cert_;
};
GeneratedCert* TlsSessionTest::cert_ = nullptr;

TEST(TlsStatusTest, ToString) {
  EXPECT_STREQ(ToString(TlsStatus::kOk), "ok");
  EXPECT_STREQ(ToString(TlsStatus::kWantIo), "want-io");
  EXPECT_STREQ(ToString(TlsStatus::kClosed), "closed");
  EXPECT_STREQ(ToString(TlsStatus::kError), "error");
}

// The faster AEAD of this wolfSSL build first: ChaCha20-Poly1305 with Debian's (no AES-NI),
// AES-128-GCM with the bundled AES-NI build on a CPU that has AES-NI.
TEST_F(TlsSessionTest, Tls13HandshakePrefersTheFasterAeadAndX25519) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx();
  ASSERT_TRUE(server_ctx && client_ctx);
  EXPECT_TRUE(server_ctx->is_server());
  EXPECT_FALSE(client_ctx->is_server());
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  ASSERT_TRUE(client && server);
  EXPECT_EQ(client->version(), "");
  EXPECT_EQ(client->cipher(), "");

  const auto r = PumpHandshake(client.get(), server.get());
  ASSERT_EQ(r.client, TlsStatus::kOk) << client->last_error();
  ASSERT_EQ(r.server, TlsStatus::kOk) << server->last_error();
  EXPECT_TRUE(client->handshake_done());
  EXPECT_TRUE(server->handshake_done());
  EXPECT_EQ(client->version(), "TLSv1.3");
  EXPECT_EQ(server->version(), "TLSv1.3");
  const char* expected =
      TlsPrefersAesGcm() ? "TLS_AES_128_GCM_SHA256" : "TLS_CHACHA20_POLY1305_SHA256";
  EXPECT_EQ(client->cipher(), expected);
  EXPECT_EQ(server->cipher(), expected);
  EXPECT_EQ(client->group(), "X25519");
  EXPECT_FALSE(client->resumed());
  EXPECT_TRUE(client->last_error().empty());
  // Handshake() after completion is a no-op.
  EXPECT_EQ(client->Handshake(), TlsStatus::kOk);
}

TEST_F(TlsSessionTest, DataBothWays) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx();
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  const auto r = PumpHandshake(client.get(), server.get());
  ASSERT_EQ(r.client, TlsStatus::kOk) << client->last_error();
  ASSERT_EQ(r.server, TlsStatus::kOk) << server->last_error();

  ASSERT_EQ(client->Write("EHLO client.test\r\n"), TlsStatus::kOk);
  std::string got;
  EXPECT_EQ(Transfer(client.get(), server.get(), &got), TlsStatus::kWantIo)
      << server->last_error();
  EXPECT_EQ(got, "EHLO client.test\r\n");

  // The server's reply also carries the TLS 1.3 NewSessionTicket the client must digest.
  ASSERT_EQ(server->Write("250-sink.test\r\n250 PIPELINING\r\n"), TlsStatus::kOk);
  got.clear();
  EXPECT_EQ(Transfer(server.get(), client.get(), &got), TlsStatus::kWantIo)
      << client->last_error();
  EXPECT_EQ(got, "250-sink.test\r\n250 PIPELINING\r\n");

  // Two writes in one feed come out as one stream.
  ASSERT_EQ(client->Write("MAIL FROM:<a@b>\r\n"), TlsStatus::kOk);
  ASSERT_EQ(client->Write("RCPT TO:<c@d>\r\n"), TlsStatus::kOk);
  got.clear();
  EXPECT_EQ(Transfer(client.get(), server.get(), &got), TlsStatus::kWantIo);
  EXPECT_EQ(got, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");

  // Empty write queues nothing.
  ASSERT_EQ(client->Write(""), TlsStatus::kOk);
  EXPECT_FALSE(client->has_ciphertext_out());
}

std::string Pattern(size_t size) {
  std::string s(size, '\0');
  uint32_t x = 2463534242u;
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

TEST_F(TlsSessionTest, OneMebibyteBothWaysInOddChunks) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx();
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  ASSERT_EQ(PumpHandshake(client.get(), server.get()).client, TlsStatus::kOk);

  const std::string payload = Pattern(1 << 20);
  ASSERT_EQ(client->Write(payload), TlsStatus::kOk);
  // 64 records of 16 KiB plus per-record overhead.
  EXPECT_GT(client->ciphertext_out().size(), payload.size() + 64 * 17);
  std::string got;
  got.reserve(payload.size());
  EXPECT_EQ(Transfer(client.get(), server.get(), &got, 7001), TlsStatus::kWantIo)
      << server->last_error();
  EXPECT_EQ(got.size(), payload.size());
  EXPECT_TRUE(got == payload);

  ASSERT_EQ(server->Write(payload), TlsStatus::kOk);
  got.clear();
  EXPECT_EQ(Transfer(server.get(), client.get(), &got, 65536), TlsStatus::kWantIo)
      << client->last_error();
  EXPECT_TRUE(got == payload);
}

TEST_F(TlsSessionTest, PartialConsumeKeepsUnsentBytesAtTheFront) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx();
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  ASSERT_EQ(PumpHandshake(client.get(), server.get()).client, TlsStatus::kOk);

  const std::string payload = Pattern(100000);
  ASSERT_EQ(client->Write(payload), TlsStatus::kOk);
  std::string got;
  // Simulate a kernel that accepts 1000 bytes per send.
  while (client->has_ciphertext_out()) {
    const std::string& out = client->ciphertext_out();
    const size_t n = std::min<size_t>(1000, out.size());
    server->FeedCiphertext(absl::string_view(out).substr(0, n));
    client->ConsumeCiphertext(n);
    ASSERT_EQ(server->ReadPlaintext(&got), TlsStatus::kWantIo) << server->last_error();
  }
  EXPECT_TRUE(got == payload);
  client->ConsumeCiphertext(10);  // past the end: harmless
  EXPECT_TRUE(client->ciphertext_out().empty());
}

TEST_F(TlsSessionTest, OneByteAtATime) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx();
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  const auto r = PumpHandshake(client.get(), server.get(), 1);
  ASSERT_EQ(r.client, TlsStatus::kOk) << client->last_error();
  ASSERT_EQ(r.server, TlsStatus::kOk) << server->last_error();

  ASSERT_EQ(client->Write("DATA\r\n"), TlsStatus::kOk);
  std::string got;
  EXPECT_EQ(Transfer(client.get(), server.get(), &got, 1), TlsStatus::kWantIo);
  EXPECT_EQ(got, "DATA\r\n");
  ASSERT_EQ(server->Write("354 go ahead\r\n"), TlsStatus::kOk);
  got.clear();
  EXPECT_EQ(Transfer(server.get(), client.get(), &got, 1), TlsStatus::kWantIo);
  EXPECT_EQ(got, "354 go ahead\r\n");
}

TEST_F(TlsSessionTest, Tls12OnlyServer) {
  auto server_ctx = ServerCtx(*cert_, /*tls12_only=*/true);
  auto client_ctx = ClientCtx();
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  const auto r = PumpHandshake(client.get(), server.get());
  ASSERT_EQ(r.client, TlsStatus::kOk) << client->last_error();
  ASSERT_EQ(r.server, TlsStatus::kOk) << server->last_error();
  EXPECT_EQ(client->version(), "TLSv1.2");
  EXPECT_EQ(client->group(), "X25519");
  EXPECT_EQ(client->cipher(), TlsPrefersAesGcm()
                                  ? "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
                                  : "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256");

  ASSERT_EQ(client->Write("QUIT\r\n"), TlsStatus::kOk);
  std::string got;
  EXPECT_EQ(Transfer(client.get(), server.get(), &got), TlsStatus::kWantIo);
  EXPECT_EQ(got, "QUIT\r\n");
}

TEST_F(TlsSessionTest, Tls13OnlyClientRejectsTls12Server) {
  auto server_ctx = ServerCtx(*cert_, /*tls12_only=*/true);
  auto client_ctx = ClientCtx(ClientOpts(false, "", true));
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  const auto r = PumpHandshake(client.get(), server.get());
  EXPECT_TRUE(r.client == TlsStatus::kError || r.server == TlsStatus::kError);
  EXPECT_FALSE(client->handshake_done());
}

TEST_F(TlsSessionTest, ExplicitCipherListIsHonoured) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx(ClientOpts(false, "", false, "TLS13-AES128-GCM-SHA256"));
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  ASSERT_EQ(PumpHandshake(client.get(), server.get()).client, TlsStatus::kOk)
      << client->last_error();
  EXPECT_EQ(client->cipher(), "TLS_AES_128_GCM_SHA256");

  EXPECT_FALSE(TlsContext::NewClient(ClientOpts(false, "", false, "NO-SUCH-CIPHER")).ok());
}

TEST_F(TlsSessionTest, VerifyPeerWithRightName) {
  const std::string ca = WriteTempFile("verify_ok_ca.pem", cert_->cert_pem);
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx(ClientOpts(true, ca));
  ASSERT_TRUE(client_ctx);
  for (const char* name : {"sink.test", "mx.sink.test"}) {
    SCOPED_TRACE(name);
    auto client = client_ctx->NewSession(name);
    auto server = server_ctx->NewSession();
    const auto r = PumpHandshake(client.get(), server.get());
    EXPECT_EQ(r.client, TlsStatus::kOk) << client->last_error();
    EXPECT_EQ(r.server, TlsStatus::kOk) << server->last_error();
  }
}

TEST_F(TlsSessionTest, VerifyPeerFailsOnWrongName) {
  const std::string ca = WriteTempFile("verify_name_ca.pem", cert_->cert_pem);
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx(ClientOpts(true, ca));
  auto client = client_ctx->NewSession("other.test");
  auto server = server_ctx->NewSession();
  const auto r = PumpHandshake(client.get(), server.get());
  EXPECT_EQ(r.client, TlsStatus::kError);
  EXPECT_FALSE(client->handshake_done());
  EXPECT_NE(client->last_error().find("wolfSSL error -"), std::string::npos)
      << client->last_error();
  // The client queued an alert for the server.
  EXPECT_TRUE(client->has_ciphertext_out());
  // Errors are sticky.
  EXPECT_EQ(client->Handshake(), TlsStatus::kError);
  EXPECT_EQ(client->Write("x"), TlsStatus::kError);
  std::string plain;
  EXPECT_EQ(client->ReadPlaintext(&plain), TlsStatus::kError);
}

TEST_F(TlsSessionTest, VerifyPeerFailsOnUntrustedCert) {
  const GeneratedCert other = MakeCert("other-ca.test", {"sink.test"});
  const std::string ca = WriteTempFile("verify_untrusted_ca.pem", other.cert_pem);
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx(ClientOpts(true, ca));
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  const auto r = PumpHandshake(client.get(), server.get());
  EXPECT_EQ(r.client, TlsStatus::kError);
  EXPECT_NE(client->last_error().find("wolfSSL error -"), std::string::npos)
      << client->last_error();
}

TEST_F(TlsSessionTest, NoVerificationAcceptsAnyCertAndName) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx(ClientOpts(false));
  auto client = client_ctx->NewSession("unrelated.example");
  auto server = server_ctx->NewSession();
  EXPECT_EQ(PumpHandshake(client.get(), server.get()).client, TlsStatus::kOk)
      << client->last_error();
}

TEST_F(TlsSessionTest, IpLiteralServerNameSkipsSni) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx();
  for (const char* name : {"192.0.2.1", "2001:db8::1"}) {
    auto client = client_ctx->NewSession(name);
    auto server = server_ctx->NewSession();
    EXPECT_EQ(PumpHandshake(client.get(), server.get()).client, TlsStatus::kOk)
        << name << ": " << client->last_error();
  }
}

TEST_F(TlsSessionTest, MissingCaFileIsAnError) {
  auto ctx = TlsContext::NewClient(ClientOpts(true, "/nonexistent/ca.pem"));
  ASSERT_FALSE(ctx.ok());
  EXPECT_NE(ctx.status().message().find("/nonexistent/ca.pem"), std::string::npos);
  // Issue 10 item 12: the reason is the file system's, not "wolfSSL error -4: unknown error".
  EXPECT_NE(ctx.status().message().find("No such file or directory"), std::string::npos)
      << ctx.status();
  EXPECT_EQ(ctx.status().message().find("unknown error"), std::string::npos) << ctx.status();
}

TEST_F(TlsSessionTest, SystemStoreLoads) {
  auto ctx = TlsContext::NewClient(ClientOpts(true));
  if (!ctx.ok()) GTEST_SKIP() << "no system CA store: " << ctx.status();
  EXPECT_NE(*ctx, nullptr);
}

TEST_F(TlsSessionTest, BadServerPemIsAnError) {
  auto junk_cert = TlsContext::NewServer(ServerOpts("junk", cert_->key_pem));
  EXPECT_FALSE(junk_cert.ok());
  auto junk_key = TlsContext::NewServer(ServerOpts(cert_->cert_pem, "junk"));
  EXPECT_FALSE(junk_key.ok());
  const GeneratedCert other = MakeCert("other.test", {});
  auto mismatch = TlsContext::NewServer(ServerOpts(cert_->cert_pem, other.key_pem));
  EXPECT_FALSE(mismatch.ok());
}

struct GarbageCase {
  const char* name;
  std::string bytes;
};
void PrintTo(const GarbageCase& c, std::ostream* os) { *os << c.name; }

class GarbageTest : public TlsSessionTest, public ::testing::WithParamInterface<GarbageCase> {};

TEST_P(GarbageTest, ServerHandshakeFailsCleanly) {
  auto server_ctx = ServerCtx(*cert_);
  auto server = server_ctx->NewSession();
  server->FeedCiphertext(GetParam().bytes);
  TlsStatus st = server->Handshake();
  // A truncated-but-plausible record may just want more input; anything else is an error.
  if (st == TlsStatus::kWantIo) {
    server->FeedCiphertext(std::string(20000, '\xff'));
    st = server->Handshake();
  }
  EXPECT_EQ(st, TlsStatus::kError);
  EXPECT_FALSE(server->last_error().empty());
}

TEST_P(GarbageTest, ClientReadFailsCleanlyAfterHandshake) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx();
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  ASSERT_EQ(PumpHandshake(client.get(), server.get()).client, TlsStatus::kOk);
  client->FeedCiphertext(GetParam().bytes);
  std::string plain;
  TlsStatus st = client->ReadPlaintext(&plain);
  if (st == TlsStatus::kWantIo) {
    client->FeedCiphertext(std::string(20000, '\xff'));
    st = client->ReadPlaintext(&plain);
  }
  EXPECT_EQ(st, TlsStatus::kError);
  EXPECT_FALSE(client->last_error().empty());
  EXPECT_TRUE(plain.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Inputs, GarbageTest,
    ::testing::Values(
        // A plaintext SMTP reply where a TLS record was expected (server ignored STARTTLS).
        GarbageCase{"SmtpText", "220 mx.example.com ESMTP\r\n"},
        GarbageCase{"HttpRequest", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
        // Handshake record header announcing 65535 bytes (above the 2^14+2048 limit).
        GarbageCase{"OversizedRecord", std::string("\x16\x03\x03\xff\xff", 5)},
        // Application-data record with a bogus length and random body.
        GarbageCase{"RandomAppData", std::string("\x17\x03\x03\x00\x20", 5) + std::string(32, 'A')},
        GarbageCase{"AllOnes", std::string(300, '\xff')},
        GarbageCase{"Zeros", std::string(300, '\0')}),
    [](const ::testing::TestParamInfo<GarbageCase>& info) { return info.param.name; });

TEST_F(TlsSessionTest, CloseNotifyGivesClosedAfterPendingData) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx();
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  ASSERT_EQ(PumpHandshake(client.get(), server.get()).client, TlsStatus::kOk);

  ASSERT_EQ(server->Write("221 bye\r\n"), TlsStatus::kOk);
  server->Shutdown();
  std::string got;
  EXPECT_EQ(Transfer(server.get(), client.get(), &got), TlsStatus::kClosed)
      << client->last_error();
  EXPECT_EQ(got, "221 bye\r\n");
  // Still closed on the next read.
  EXPECT_EQ(client->ReadPlaintext(&got), TlsStatus::kClosed);

  // The client answers with its own close_notify; the server sees it as closed too.
  client->Shutdown();
  got.clear();
  EXPECT_EQ(Transfer(client.get(), server.get(), &got), TlsStatus::kClosed)
      << server->last_error();
  EXPECT_TRUE(got.empty());
}

TEST_F(TlsSessionTest, WriteBeforeHandshakeIsAnError) {
  auto client_ctx = ClientCtx();
  auto client = client_ctx->NewSession("sink.test");
  EXPECT_EQ(client->Write("EHLO x\r\n"), TlsStatus::kError);
  EXPECT_FALSE(client->last_error().empty());
}

TEST_F(TlsSessionTest, ReadPlaintextDrivesTheHandshake) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx();
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  std::string got;
  // ClientHello.
  EXPECT_EQ(client->ReadPlaintext(&got), TlsStatus::kWantIo);
  server->FeedCiphertext(client->TakeCiphertext());
  EXPECT_EQ(server->ReadPlaintext(&got), TlsStatus::kWantIo);
  client->FeedCiphertext(server->TakeCiphertext());
  // Client finishes and sends its Finished plus application data in the same flight.
  EXPECT_EQ(client->Handshake(), TlsStatus::kOk);
  ASSERT_EQ(client->Write("EHLO early.test\r\n"), TlsStatus::kOk);
  server->FeedCiphertext(client->TakeCiphertext());
  EXPECT_EQ(server->ReadPlaintext(&got), TlsStatus::kWantIo) << server->last_error();
  EXPECT_TRUE(server->handshake_done());
  EXPECT_EQ(got, "EHLO early.test\r\n");
}

// A sender that keeps its drained buffers hands one in: the next records are written into it
// (no allocation), and they decrypt like any others; while ciphertext is pending the offer is
// ignored (the pending bytes must stay where they are).
TEST_F(TlsSessionTest, ProvidedOutputBufferReceivesTheNextRecords) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx();
  auto client = client_ctx->NewSession("sink.test");
  auto server = server_ctx->NewSession();
  ASSERT_EQ(PumpHandshake(client.get(), server.get()).client, TlsStatus::kOk);
  std::string leftover = client->TakeCiphertext();  // whatever the pump left, if anything
  std::string kept;
  kept.reserve(64 * 1024);
  const char* kept_data = kept.data();
  client->ProvideOutputBuffer(std::move(kept));
  const std::string body(20000, 'x');
  ASSERT_EQ(client->Write(body), TlsStatus::kOk);
  std::string wire = client->TakeCiphertext();
  EXPECT_EQ(wire.data(), kept_data);  // written in place, not reallocated
  std::string spare;
  spare.reserve(128 * 1024);
  ASSERT_EQ(client->Write("QUIT\r\n"), TlsStatus::kOk);
  client->ProvideOutputBuffer(std::move(spare));  // bytes pending: ignored
  wire += client->TakeCiphertext();
  server->FeedCiphertext(leftover + wire);
  std::string got;
  EXPECT_EQ(server->ReadPlaintext(&got), TlsStatus::kWantIo) << server->last_error();
  EXPECT_EQ(got, body + "QUIT\r\n");
}

// Handshake with `params` (server: `server_params`), then one reply from the server: a TLS 1.3
// NewSessionTicket, if the server sends one, arrives with it (as the engine's first reply does).
struct Pair {
  std::unique_ptr<TlsSession> client;
  std::unique_ptr<TlsSession> server;
};
Pair Connect(TlsContext& client_ctx, TlsContext& server_ctx, const SessionParams& params,
             const SessionParams& server_params = SessionParams()) {
  Pair p{client_ctx.NewSession("sink.test", params), server_ctx.NewSession("", server_params)};
  const auto r = PumpHandshake(p.client.get(), p.server.get());
  EXPECT_EQ(r.client, TlsStatus::kOk) << p.client->last_error();
  EXPECT_EQ(r.server, TlsStatus::kOk) << p.server->last_error();
  if (r.client != TlsStatus::kOk || r.server != TlsStatus::kOk) return p;
  EXPECT_EQ(p.server->Write("250 sink.test\r\n"), TlsStatus::kOk);
  std::string plain;
  EXPECT_EQ(Transfer(p.server.get(), p.client.get(), &plain), TlsStatus::kWantIo);
  EXPECT_EQ(plain, "250 sink.test\r\n");
  return p;
}

// Issue 10 item 13 (Postfix 3.7 logged "binder does not verify"). RFC 8446 §4.6.1: a ticket's PSK
// derives from the resumption_master_secret of the connection that received the ticket. Postfix
// (OpenSSL) resumes without sending a new ticket; wolfSSL's client session then pairs the old
// ticket with the resumed connection's own resumption secret, so a session saved from it offers
// a binder no server can verify. The resumed connection must save nothing (the caller keeps the
// ticket it resumed with), and that ticket must resume again.
TEST_F(TlsSessionTest, ResumedWithoutNewTicketSavesNothingAndOldTicketStillResumes) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx();
  Pair first = Connect(*client_ctx, *server_ctx, SessionParams());
  std::shared_ptr<TlsSessionTicket> ticket = first.client->SaveSession();
  ASSERT_NE(ticket, nullptr);
  ASSERT_EQ(ticket->version(), "TLSv1.3");

  SessionParams resume;
  resume.resume = ticket.get();
  SessionParams no_tickets;
  no_tickets.issue_tickets = false;
  for (int i = 0; i < 3; ++i) {
    Pair again = Connect(*client_ctx, *server_ctx, resume, no_tickets);
    ASSERT_TRUE(again.client->handshake_done()) << i;
    EXPECT_TRUE(again.client->resumed()) << i;
    EXPECT_TRUE(again.server->resumed()) << i;
    // What the engine does: keep the newest ticket, i.e. replace it by whatever was saved.
    if (std::shared_ptr<TlsSessionTicket> saved = again.client->SaveSession()) {
      ADD_FAILURE() << i << ": saved a session although no ticket arrived";
      ticket = std::move(saved);
      resume.resume = ticket.get();
    }
  }
  // A server that does send a ticket after resumption still gets it used.
  Pair renewed = Connect(*client_ctx, *server_ctx, resume);
  ASSERT_TRUE(renewed.client->resumed());
  std::shared_ptr<TlsSessionTicket> newer = renewed.client->SaveSession();
  ASSERT_NE(newer, nullptr);
  resume.resume = newer.get();
  EXPECT_TRUE(Connect(*client_ctx, *server_ctx, resume).client->resumed());
}

TEST_F(TlsSessionTest, ManySessionsFromOneContext) {
  auto server_ctx = ServerCtx(*cert_);
  auto client_ctx = ClientCtx();
  for (int i = 0; i < 20; ++i) {
    auto client = client_ctx->NewSession("sink.test");
    auto server = server_ctx->NewSession();
    const auto r = PumpHandshake(client.get(), server.get());
    ASSERT_EQ(r.client, TlsStatus::kOk) << i << ": " << client->last_error();
    ASSERT_EQ(r.server, TlsStatus::kOk) << i << ": " << server->last_error();
  }
}

}  // namespace
}  // namespace mxb
