// The MITM proxy and the dead-port listeners, tested on their own against mxburst-sink started
// as a subprocess, with a blocking test client (and tls/ for the handshake through the proxy).
#include "tests/integration/mitm_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/integration/fixture.h"
#include "tls/tls_session.h"

namespace mxb::testing {
namespace {

constexpr char kSinkName[] = "mx.mitm.test";

// ---------------------------------------------------------------------------------------------
// Pure rewrites

TEST(MitmRewrite, StripStartTlsInTheMiddle) {
  bool changed = false;
  EXPECT_EQ(StripEhloKeyword("250-mx\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
                             "STARTTLS", &changed),
            "250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
  EXPECT_TRUE(changed);
}

TEST(MitmRewrite, StripStartTlsAsLastLineFixesTheContinuation) {
  bool changed = false;
  EXPECT_EQ(StripEhloKeyword("250-mx\r\n250-PIPELINING\r\n250 starttls\r\n", "STARTTLS",
                             &changed),
            "250-mx\r\n250 PIPELINING\r\n");
  EXPECT_TRUE(changed);
  EXPECT_EQ(StripEhloKeyword("250-mx\r\n250 STARTTLS\r\n", "STARTTLS", &changed), "250 mx\r\n");
}

TEST(MitmRewrite, StripLeavesOtherRepliesAlone) {
  bool changed = true;
  const std::string reply = "250-mx\r\n250-STARTTLSX\r\n250 SIZE 10\r\n";
  EXPECT_EQ(StripEhloKeyword(reply, "STARTTLS", &changed), reply);
  EXPECT_FALSE(changed);
  // The first line is the host name, even if it happens to be "STARTTLS".
  EXPECT_EQ(StripEhloKeyword("250 STARTTLS\r\n", "STARTTLS", &changed), "250 STARTTLS\r\n");
  EXPECT_FALSE(changed);
}

TEST(MitmRewrite, AddCapabilities) {
  EXPECT_EQ(AddEhloKeywords("250-mx\r\n250 8BITMIME\r\n", {"SIZE 1000", "CHUNKING"}),
            "250-mx\r\n250-SIZE 1000\r\n250-CHUNKING\r\n250 8BITMIME\r\n");
  EXPECT_EQ(AddEhloKeywords("250 mx\r\n", {"CHUNKING"}), "250-mx\r\n250 CHUNKING\r\n");
}

TEST(MitmRewrite, ModeNames) {
  EXPECT_STREQ(ToString(MitmMode::kPassThrough), "pass-through");
  EXPECT_STREQ(ToString(MitmMode::kStripStartTls), "strip-starttls");
  EXPECT_STREQ(ToString(MitmMode::kInjectAfterStartTlsSameSegment), "inject-same-segment");
  EXPECT_STREQ(ToString(MitmMode::kInjectAfterStartTlsSeparateSegment),
               "inject-separate-segment");
  EXPECT_STREQ(ToString(MitmMode::kFakePreTlsCapabilities), "fake-pre-tls-capabilities");
}

// ---------------------------------------------------------------------------------------------
// A blocking SMTP client

int Connect(const std::string& ip, uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, ip.c_str(), &sa.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv;
  tv.tv_sec = 5;
  tv.tv_usec = 0;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

class Client {
 public:
  explicit Client(int fd) : fd_(fd) {}
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return fd_ >= 0; }

  void Send(const std::string& bytes) {
    if (tls_ != nullptr) {
      ASSERT_EQ(tls_->Write(bytes), TlsStatus::kOk);
      SendRaw(tls_->TakeCiphertext());
    } else {
      SendRaw(bytes);
    }
  }

  // One recv() worth of bytes (plaintext or decrypted); empty on timeout/EOF.
  std::string RecvChunk() {
    char buf[16384];
    for (;;) {
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return "";
      if (tls_ == nullptr) return std::string(buf, static_cast<size_t>(n));
      tls_->FeedCiphertext(absl::string_view(buf, static_cast<size_t>(n)));
      std::string plain;
      const TlsStatus st = tls_->ReadPlaintext(&plain);
      if (tls_->has_ciphertext_out()) SendRaw(tls_->TakeCiphertext());
      if (st == TlsStatus::kError) return "";
      if (!plain.empty()) return plain;
    }
  }

  // Reads until buffered input holds a complete reply; returns it (and keeps what follows).
  std::string ReadReply() {
    for (;;) {
      size_t start = 0;
      for (size_t nl; (nl = pending_.find("\r\n", start)) != std::string::npos;) {
        const absl::string_view line = absl::string_view(pending_).substr(start, nl - start);
        start = nl + 2;
        if (line.size() < 4 || line[3] == ' ') {
          std::string reply = pending_.substr(0, start);
          pending_.erase(0, start);
          return reply;
        }
      }
      const std::string chunk = RecvChunk();
      if (chunk.empty()) return "";
      chunks_.push_back(chunk);
      pending_ += chunk;
    }
  }

  std::string Command(const std::string& line) {
    Send(line + "\r\n");
    return ReadReply();
  }

  // RFC 3207 §4.2 / DESIGN.md: after the 220, bytes already buffered are discarded (what the
  // engine must do), then the handshake runs over the socket.
  bool StartTls(TlsContext& ctx, const SessionParams& params, std::string* discarded) {
    *discarded = pending_;
    pending_.clear();
    tls_ = ctx.NewSession(kSinkName, params);
    if (tls_ == nullptr) return false;
    for (int round = 0; round < 20; ++round) {
      const TlsStatus st = tls_->Handshake();
      if (tls_->has_ciphertext_out()) SendRaw(tls_->TakeCiphertext());
      if (st == TlsStatus::kOk) return true;
      if (st != TlsStatus::kWantIo) return false;
      char buf[16384];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return false;
      tls_->FeedCiphertext(absl::string_view(buf, static_cast<size_t>(n)));
    }
    return false;
  }

  const std::vector<std::string>& chunks() const { return chunks_; }
  const TlsSession* tls() const { return tls_.get(); }

 private:
  void SendRaw(const std::string& bytes) {
    ASSERT_EQ(send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  int fd_;
  std::string pending_;
  std::vector<std::string> chunks_;  // every recv() chunk, for segment assertions
  std::unique_ptr<TlsSession> tls_;
};

// ---------------------------------------------------------------------------------------------
// Against mxburst-sink

class MitmProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("mitm");
    const std::string ready = dir_ + "/ready";
    ca_file_ = dir_ + "/ca.pem";
    sink_ = std::make_unique<Subprocess>(
        std::vector<std::string>{Bin("tools/mxburst-sink"), "--listen", "127.0.0.1:0",
                                 "--out-dir", dir_ + "/out", "--cert-names", kSinkName,
                                 "--write-cert", ca_file_, "--ready-file", ready, "--quiet"},
        dir_ + "/sink.out", dir_ + "/sink.err");
    ASSERT_TRUE(sink_->started());
    ASSERT_TRUE(WaitForFile(ready, absl::Seconds(10))) << ReadFileOrDie(dir_ + "/sink.err");
    const std::string line(absl::StripTrailingAsciiWhitespace(ReadFileOrDie(ready)));
    const size_t colon = line.rfind(':');
    ASSERT_NE(colon, std::string::npos) << line;
    int port = 0;
    ASSERT_TRUE(absl::SimpleAtoi(line.substr(colon + 1, line.find(' ', colon) - colon - 1), &port))
        << line;
    sink_port_ = static_cast<uint16_t>(port);
    TlsGlobalInit();
    TlsClientOptions o;
    o.ca_file = ca_file_;
    auto ctx = TlsContext::NewClient(o);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    tls_ = *std::move(ctx);
  }

  std::unique_ptr<MitmProxy> StartProxy(MitmMode mode) {
    MitmOptions o;
    o.listen_ip = "127.0.0.1";
    o.upstream_ip = "127.0.0.1";
    o.upstream_port = sink_port_;
    o.mode = mode;
    absl::StatusOr<std::unique_ptr<MitmProxy>> p = MitmProxy::Start(o);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *std::move(p) : nullptr;
  }

  static SessionParams Strict() {
    SessionParams p;
    p.verify = true;
    return p;
  }

  std::string dir_;
  std::string ca_file_;
  std::unique_ptr<Subprocess> sink_;
  uint16_t sink_port_ = 0;
  std::unique_ptr<TlsContext> tls_;
};

// Every line "250-" except the last "250 ".
void ExpectValidMultiline(const std::string& reply) {
  std::vector<std::string> lines = absl::StrSplit(reply, "\r\n", absl::SkipEmpty());
  ASSERT_FALSE(lines.empty());
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_TRUE(absl::StartsWith(lines[i], i + 1 == lines.size() ? "250 " : "250-"))
        << "line " << i << " of\n" << reply;
  }
}

TEST_F(MitmProxyTest, PassThroughRelaysPlaintextAndTls) {
  auto proxy = StartProxy(MitmMode::kPassThrough);
  ASSERT_NE(proxy, nullptr);
  Client c(Connect(proxy->ip(), proxy->port()));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(absl::StartsWith(c.ReadReply(), "220 "));
  const std::string ehlo = c.Command("EHLO client.test");
  EXPECT_NE(ehlo.find("STARTTLS"), std::string::npos) << ehlo;
  EXPECT_TRUE(absl::StartsWith(c.Command("STARTTLS"), "220 "));
  std::string discarded;
  ASSERT_TRUE(c.StartTls(*tls_, Strict(), &discarded)) << c.tls()->last_error();
  EXPECT_EQ(discarded, "");
  EXPECT_TRUE(c.tls()->verified());
  const std::string ehlo2 = c.Command("EHLO client.test");
  EXPECT_TRUE(absl::StartsWith(ehlo2, "250")) << ehlo2;
  EXPECT_EQ(ehlo2.find("STARTTLS"), std::string::npos) << ehlo2;
  EXPECT_TRUE(absl::StartsWith(c.Command("QUIT"), "221"));
  EXPECT_EQ(proxy->connections(), 1);
}

TEST_F(MitmProxyTest, StripStartTlsHidesItAndRefusesTheCommand) {
  auto proxy = StartProxy(MitmMode::kStripStartTls);
  ASSERT_NE(proxy, nullptr);
  Client c(Connect(proxy->ip(), proxy->port()));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(absl::StartsWith(c.ReadReply(), "220 "));
  const std::string ehlo = c.Command("EHLO client.test");
  EXPECT_EQ(ehlo.find("STARTTLS"), std::string::npos) << ehlo;
  EXPECT_NE(ehlo.find("PIPELINING"), std::string::npos) << ehlo;
  ExpectValidMultiline(ehlo);
  EXPECT_EQ(proxy->starttls_stripped(), 1);
  // A client that tries anyway is refused by the proxy; the sink never sees the command.
  EXPECT_EQ(c.Command("STARTTLS"), "502 5.5.1 not supported\r\n");
  EXPECT_EQ(proxy->starttls_refused(), 1);
  // The plaintext session goes on (what an opportunistic client would do).
  EXPECT_TRUE(absl::StartsWith(c.Command("MAIL FROM:<a@client.test>"), "250"));
  EXPECT_TRUE(absl::StartsWith(c.Command("RSET"), "250"));
  EXPECT_TRUE(absl::StartsWith(c.Command("QUIT"), "221"));
  EXPECT_EQ(proxy->tls_relays(), 0);
}

void InjectionCase(MitmProxy* proxy, TlsContext* tls, const SessionParams& strict,
                   bool same_segment) {
  Client c(Connect(proxy->ip(), proxy->port()));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(absl::StartsWith(c.ReadReply(), "220 "));
  EXPECT_TRUE(absl::StartsWith(c.Command("EHLO client.test"), "250"));
  const std::string ready = c.Command("STARTTLS");
  ASSERT_TRUE(absl::StartsWith(ready, "220 ")) << ready;
  const std::string segment_with_220 = c.chunks().back();
  if (same_segment) {
    // The forged reply came in the very segment that carried the 220.
    EXPECT_EQ(segment_with_220, ready + "250 2.0.0 injected\r\n");
  } else {
    EXPECT_EQ(segment_with_220, ready);
    // The second segment arrives on its own, before the server's first TLS record.
    EXPECT_EQ(c.RecvChunk(), "250 2.0.0 injected\r\n");
  }
  EXPECT_EQ(proxy->injections(), 1);
  std::string discarded;
  ASSERT_TRUE(c.StartTls(*tls, strict, &discarded)) << c.tls()->last_error();
  EXPECT_EQ(discarded, same_segment ? "250 2.0.0 injected\r\n" : "");
  // Inside TLS the client talks to the real server, which never saw the forged reply.
  const std::string ehlo2 = c.Command("EHLO client.test");
  EXPECT_TRUE(absl::StartsWith(ehlo2, "250")) << ehlo2;
  EXPECT_TRUE(absl::StartsWith(c.Command("QUIT"), "221"));
  EXPECT_EQ(proxy->tls_relays(), 1);
}

TEST_F(MitmProxyTest, InjectAfterStartTlsSameSegment) {
  auto proxy = StartProxy(MitmMode::kInjectAfterStartTlsSameSegment);
  ASSERT_NE(proxy, nullptr);
  InjectionCase(proxy.get(), tls_.get(), Strict(), /*same_segment=*/true);
}

TEST_F(MitmProxyTest, InjectAfterStartTlsSeparateSegment) {
  auto proxy = StartProxy(MitmMode::kInjectAfterStartTlsSeparateSegment);
  ASSERT_NE(proxy, nullptr);
  InjectionCase(proxy.get(), tls_.get(), Strict(), /*same_segment=*/false);
}

TEST_F(MitmProxyTest, FakeCapabilitiesOnlyBeforeTls) {
  auto proxy = StartProxy(MitmMode::kFakePreTlsCapabilities);
  ASSERT_NE(proxy, nullptr);
  Client c(Connect(proxy->ip(), proxy->port()));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(absl::StartsWith(c.ReadReply(), "220 "));
  const std::string ehlo = c.Command("EHLO client.test");
  EXPECT_NE(ehlo.find("250-SIZE 1000\r\n250-CHUNKING\r\n"), std::string::npos) << ehlo;
  EXPECT_NE(ehlo.find("STARTTLS"), std::string::npos) << ehlo;
  ExpectValidMultiline(ehlo);
  EXPECT_EQ(proxy->capabilities_faked(), 1);
  EXPECT_TRUE(absl::StartsWith(c.Command("STARTTLS"), "220 "));
  std::string discarded;
  ASSERT_TRUE(c.StartTls(*tls_, Strict(), &discarded)) << c.tls()->last_error();
  const std::string ehlo2 = c.Command("EHLO client.test");
  EXPECT_EQ(ehlo2.find("SIZE 1000"), std::string::npos) << ehlo2;
  EXPECT_EQ(ehlo2.find("CHUNKING"), std::string::npos) << ehlo2;
  EXPECT_EQ(proxy->capabilities_faked(), 1);
  EXPECT_TRUE(absl::StartsWith(c.Command("QUIT"), "221"));
}

TEST_F(MitmProxyTest, EveryConnectionIsProxiedOnItsOwn) {
  auto proxy = StartProxy(MitmMode::kStripStartTls);
  ASSERT_NE(proxy, nullptr);
  for (int i = 0; i < 3; ++i) {
    Client c(Connect(proxy->ip(), proxy->port()));
    ASSERT_TRUE(c.ok());
    EXPECT_TRUE(absl::StartsWith(c.ReadReply(), "220 "));
    EXPECT_EQ(c.Command("EHLO client.test").find("STARTTLS"), std::string::npos);
  }
  EXPECT_EQ(proxy->connections(), 3);
  EXPECT_EQ(proxy->starttls_stripped(), 3);
}

// ---------------------------------------------------------------------------------------------
// Without a sink

TEST(MitmProxyStandalone, UpstreamRefusedClosesTheClient) {
  MitmOptions o;
  o.upstream_port = static_cast<uint16_t>(FreePort("127.0.0.1"));  // nothing listens there
  auto proxy = MitmProxy::Start(o);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const int fd = Connect((*proxy)->ip(), (*proxy)->port());
  ASSERT_GE(fd, 0);
  char b;
  EXPECT_LE(recv(fd, &b, 1, 0), 0);
  close(fd);
  EXPECT_EQ((*proxy)->upstream_failures(), 1);
}

TEST(MitmProxyStandalone, OnlyLoopback) {
  MitmOptions o;
  o.upstream_port = 25;
  o.listen_ip = "192.0.2.1";
  EXPECT_FALSE(MitmProxy::Start(o).ok());
  o.listen_ip = "127.0.0.1";
  o.upstream_ip = "192.0.2.1";
  EXPECT_FALSE(MitmProxy::Start(o).ok());
  EXPECT_FALSE(BlackHoleListener::Start("10.1.2.3", 0, BlackHoleMode::kNeverAccept).ok());
  EXPECT_FALSE(ResetListener::Start("::1", 0).ok());
}

// Nothing arrives within `ms`.
bool Silent(int fd, int ms) {
  pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, ms) == 0;
}

TEST(DeadPort, NeverAcceptAndAcceptSilentConnectThenSayNothing) {
  for (BlackHoleMode mode : {BlackHoleMode::kNeverAccept, BlackHoleMode::kAcceptSilent}) {
    auto hole = BlackHoleListener::Start("127.0.0.1", 0, mode);
    ASSERT_TRUE(hole.ok()) << hole.status();
    const int fd = Connect("127.0.0.1", (*hole)->port());
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(Silent(fd, 300));
    close(fd);
    EXPECT_EQ((*hole)->accepted(), mode == BlackHoleMode::kAcceptSilent ? 1 : 0);
  }
}

TEST(DeadPort, SynDropMakesConnectHang) {
  auto hole = BlackHoleListener::Start("127.0.0.1", 0, BlackHoleMode::kSynDrop);
  ASSERT_TRUE(hole.ok()) << hole.status();
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((*hole)->port());
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), -1);
  ASSERT_EQ(errno, EINPROGRESS);
  pollfd p = {fd, POLLOUT, 0};
  EXPECT_EQ(poll(&p, 1, 500), 0) << "connect completed: the accept queue was not full";
  close(fd);
}

TEST(DeadPort, ResetListenerSendsRst) {
  auto rst = ResetListener::Start("127.0.0.1", 0);
  ASSERT_TRUE(rst.ok()) << rst.status();
  const int fd = Connect("127.0.0.1", (*rst)->port());
  ASSERT_GE(fd, 0);
  char b;
  const ssize_t n = recv(fd, &b, 1, 0);
  const int err = errno;
  EXPECT_EQ(n, -1);
  EXPECT_EQ(err, ECONNRESET) << std::strerror(err);
  close(fd);
  EXPECT_EQ((*rst)->resets(), 1);
}

}  // namespace
}  // namespace mxb::testing
