// mxburst-inject end to end: runs the binary into a temporary spool and checks every file with
// the spool's own parser. The binary is $MXB_INJECT_BIN, else the path CMake compiled in.
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "queue/envelope.h"
#include "queue/spool.h"

namespace mxb {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class InjectTest : public testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("MXB_INJECT_BIN");
#ifdef MXB_INJECT_BIN_DEFAULT
    if (bin == nullptr || *bin == '\0') bin = MXB_INJECT_BIN_DEFAULT;
#endif
    if (bin == nullptr || *bin == '\0') GTEST_SKIP() << "MXB_INJECT_BIN not set";
    bin_ = bin;
    std::string tmpl = absl::StrCat(testing::TempDir(), "/mxb-inject-XXXXXX");
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) {
      ASSERT_EQ(std::system(absl::StrCat("rm -rf '", dir_, "'").c_str()), 0);
    }
  }

  // Runs the tool; returns its exit status and captures stdout+stderr.
  int Run(const std::string& args, std::string* output) {
    const std::string cmd = absl::StrCat("'", bin_, "' ", args, " 2>&1");
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return -1;
    char buf[4096];
    size_t n;
    output->clear();
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) output->append(buf, n);
    const int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  // name -> content of every file in spool/incoming.
  std::map<std::string, std::string> Incoming(const std::string& spool) {
    absl::StatusOr<Spool> s = Spool::Open(spool);
    EXPECT_TRUE(s.ok());
    std::map<std::string, std::string> files;
    for (const std::string& name : s->ListIncoming(1'000'000)) {
      files[name] = ReadAll(absl::StrCat(spool, "/incoming/", name));
    }
    return files;
  }

  std::string bin_;
  std::string dir_;
};

TEST_F(InjectTest, GeneratedMessagesParseAndHaveRequestedShape) {
  const std::string spool = dir_ + "/spool";
  std::string out;
  ASSERT_EQ(Run(absl::StrCat("--spool ", spool, " --count 40 --size 3000 --domains 4",
                             " --recipients-per-message 3 --job camp7 --eight-bit-every 4",
                             " --dot-lines --seed 42 --rcpt-local-prefix rc --no-fsync"),
                &out),
            0)
      << out;
  EXPECT_TRUE(absl::StartsWith(out, "injected 40 messages (")) << out;
  EXPECT_TRUE(absl::StrContains(out, absl::StrCat(" into ", spool, " in "))) << out;

  const auto files = Incoming(spool);
  ASSERT_EQ(files.size(), 40u);
  std::set<std::string> message_ids, recipients, domains;
  int eight_bit = 0, dot_lines = 0;
  for (const auto& [name, content] : files) {
    absl::StatusOr<Envelope> env = ParseEnvelope(content);
    ASSERT_TRUE(env.ok()) << name << ": " << env.status();
    EXPECT_EQ(env->sender, "bounce@esp.example");
    EXPECT_EQ(env->job, "camp7");
    ASSERT_EQ(env->recipients.size(), 3u);
    const std::string domain = DomainOf(env->recipients[0]);
    for (const std::string& r : env->recipients) {
      EXPECT_TRUE(absl::StartsWith(r, "rc")) << r;
      EXPECT_EQ(DomainOf(r), domain) << "all recipients of a message share one domain";
      EXPECT_TRUE(recipients.insert(r).second) << "recipient repeated: " << r;
    }
    domains.insert(domain);
    const absl::string_view message = absl::string_view(content).substr(env->body_offset);
    const size_t split = message.find("\r\n\r\n");
    ASSERT_NE(split, absl::string_view::npos);
    const absl::string_view headers = message.substr(0, split + 2);
    const absl::string_view body = message.substr(split + 4);
    EXPECT_EQ(body.size(), 3000u);
    for (const char* h : {"From: ", "To: ", "Subject: ", "Date: ", "Message-ID: <",
                          "MIME-Version: 1.0\r\n"}) {
      EXPECT_TRUE(absl::StrContains(headers, absl::StrCat("\r\n", h)) ||
                  absl::StartsWith(headers, h))
          << name << " lacks " << h;
    }
    const size_t mid = headers.find("Message-ID: <");
    message_ids.insert(std::string(headers.substr(mid, headers.find('\r', mid) - mid)));
    for (absl::string_view line : absl::StrSplit(body, "\r\n")) {
      EXPECT_LE(line.size(), 78u) << name;
      EXPECT_FALSE(absl::StrContains(line, "\n") || absl::StrContains(line, "\r")) << name;
      if (absl::StartsWith(line, ".")) ++dot_lines;
    }
    if (absl::StrContains(headers, "Content-Transfer-Encoding: 8bit")) {
      ++eight_bit;
      EXPECT_TRUE(absl::StrContains(headers, "charset=utf-8"));
    } else {
      for (char c : body) ASSERT_EQ(static_cast<unsigned char>(c) & 0x80, 0) << name;
    }
  }
  EXPECT_EQ(message_ids.size(), 40u);
  EXPECT_EQ(domains, (std::set<std::string>{"d1.example", "d2.example", "d3.example",
                                            "d4.example"}));
  EXPECT_EQ(eight_bit, 10);
  EXPECT_GT(dot_lines, 40);
}

TEST_F(InjectTest, SameSeedSameMessages) {
  std::string out;
  std::vector<std::multiset<std::string>> runs;
  for (const char* sub : {"/a", "/b"}) {
    ASSERT_EQ(Run(absl::StrCat("--spool ", dir_, sub,
                               " --count 5 --size-range 100-5000 --seed 9 --no-fsync"),
                  &out),
              0)
        << out;
    std::multiset<std::string> bodies;
    for (const auto& [name, content] : Incoming(dir_ + sub)) {
      // Everything but the Date header (the injection time) is reproducible.
      std::string normalised;
      for (absl::string_view line : absl::StrSplit(content, '\n')) {
        if (!absl::StartsWith(line, "Date: ")) absl::StrAppend(&normalised, line, "\n");
      }
      bodies.insert(normalised);
    }
    runs.push_back(bodies);
  }
  EXPECT_EQ(runs[0].size(), 5u);
  EXPECT_EQ(runs[0], runs[1]);
}

TEST_F(InjectTest, EmlFilesAsBodies) {
  const std::string eml = dir_ + "/m.eml";
  std::ofstream(eml, std::ios::binary) << "From: a@b.example\r\nSubject: given\r\n\r\nhello\r\n";
  std::string out;
  ASSERT_EQ(Run(absl::StrCat("--spool ", dir_, "/s --eml ", eml, " --count 3 --sender '<>'",
                             " --domain-list x.example"),
                &out),
            0)
      << out;
  const auto files = Incoming(dir_ + "/s");
  ASSERT_EQ(files.size(), 3u);
  for (const auto& [name, content] : files) {
    absl::StatusOr<Envelope> env = ParseEnvelope(content);
    ASSERT_TRUE(env.ok()) << env.status();
    EXPECT_EQ(env->sender, "");
    EXPECT_EQ(DomainOf(env->recipients[0]), "x.example");
    EXPECT_EQ(content.substr(env->body_offset), ReadAll(eml));
  }
}

TEST_F(InjectTest, BadOptionsGiveOneClearLine) {
  struct Case {
    std::string args;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"--count 3", "--spool DIR is required"},
      {"--spool S --count x", "--count: expected an integer"},
      {"--spool S --frobnicate", "unknown option '--frobnicate'"},
      {"--spool S --size 5 --size-range 1-9", "exclusive"},
      {"--spool S --sender 'a b@c.example'", "--sender: line 1: x-sender address contains a space"},
      {"--spool S --domains 2 --domain-list a.example", "exclusive"},
  };
  for (const Case& c : cases) {
    std::string out;
    EXPECT_EQ(Run(c.args, &out), 2) << c.args;
    EXPECT_TRUE(absl::StrContains(out, c.error)) << c.args << " -> " << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  }
  std::string help;
  EXPECT_EQ(Run("--help", &help), 0);
  EXPECT_TRUE(absl::StrContains(help, "--rcpt-local-prefix"));
}

}  // namespace
}  // namespace mxb
