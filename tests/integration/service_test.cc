// The service as installed (dist/): `cmake --install` into a DESTDIR puts the binaries, the
// systemd unit, the sysusers entry, the example configuration, the logrotate snippet and the man
// pages where a Debian system expects them; `systemd-analyze verify` accepts the unit in that
// root; the installed engine starts with the installed configuration.
//
// systemd-analyze runs without a systemd PID 1 (this container has none): `verify --root=DIR`
// loads the unit from DIR like the manager would and checks its syntax, every directive, the
// ExecStart binary (it must exist and be executable inside DIR) and the units it depends on, so
// the root gets the host's *.target units next to ours. Its warnings (an unknown key, a bad
// value) do not change the exit code, so any output line fails the test.
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "fixture.h"
#include "gtest/gtest.h"

namespace mxb::testing {
namespace {

namespace fs = std::filesystem;

bool Executable(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
}

std::string Output(const std::string& log) {
  std::string out;
  for (const std::string& p : {log, log + ".err"}) {
    if (fs::exists(p)) out += ReadFileOrDie(p);
  }
  return out;
}

class ServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("service"));
    root_ = new std::string(*dir_ + "/root");
    const std::string log = *dir_ + "/install.log";
    install_rc_ = RunCommand({"/usr/bin/env", "DESTDIR=" + *root_, MXB_CMAKE_COMMAND, "--install",
                              BinDir(), "--prefix", "/usr"},
                             log);
    install_output_ = new std::string(Output(log));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete root_;
    delete install_output_;
  }

  // systemd-analyze verify UNIT inside the root; returns its exit code, *out its output. The
  // root is a Debian system with our files: merged /usr (/bin -> usr/bin), kill(1) for
  // ExecReload, and man(1) finds the installed pages through MANPATH (verify runs `man` for
  // each Documentation=man: entry).
  static int Verify(const std::string& unit, std::string* out) {
    if (!fs::exists(*root_ + "/bin")) fs::create_directory_symlink("usr/bin", *root_ + "/bin");
    if (!fs::exists(*root_ + "/usr/bin/kill")) fs::copy("/usr/bin/kill", *root_ + "/usr/bin/kill");
    const std::string units = *root_ + "/usr/lib/systemd/system";
    for (const auto& e : fs::directory_iterator("/usr/lib/systemd/system")) {
      if (e.path().extension() == ".target" && !fs::exists(units + "/" + e.path().filename().string())) {
        fs::copy(e.path(), units + "/" + e.path().filename().string(),
                 fs::copy_options::copy_symlinks);
      }
    }
    const std::string log = *dir_ + "/verify-" + unit + ".log";
    int rc = RunCommand({"/usr/bin/env", "MANPATH=" + *root_ + "/usr/share/man",
                         "/usr/bin/systemd-analyze", "verify", "--root=" + *root_, unit},
                        log);
    *out = Output(log);
    return rc;
  }

  static std::string* dir_;
  static std::string* root_;
  static int install_rc_;
  static std::string* install_output_;
};
std::string* ServiceTest::dir_ = nullptr;
std::string* ServiceTest::root_ = nullptr;
int ServiceTest::install_rc_ = -1;
std::string* ServiceTest::install_output_ = nullptr;

TEST_F(ServiceTest, InstallsEverythingIntoDestdir) {
  ASSERT_EQ(install_rc_, 0) << *install_output_;
  const std::string& r = *root_;
  for (const char* bin : {"/usr/bin/mxburst", "/usr/bin/mxburstctl", "/usr/bin/mxburst-inject"}) {
    EXPECT_TRUE(Executable(r + bin)) << bin;
  }
  for (const char* f : {"/usr/lib/systemd/system/mxburst.service", "/usr/lib/sysusers.d/mxburst.conf",
                        "/etc/mxburst/mxburst.toml", "/etc/mxburst/bounce-classes.toml",
                        "/etc/logrotate.d/mxburst"}) {
    EXPECT_TRUE(fs::is_regular_file(r + f)) << f;
  }
  if (std::system("command -v scdoc >/dev/null") == 0) {
    for (const char* f : {"/usr/share/man/man8/mxburst.8", "/usr/share/man/man8/mxburstctl.8",
                          "/usr/share/man/man5/mxburst.toml.5"}) {
      ASSERT_TRUE(fs::is_regular_file(r + f)) << f;
      EXPECT_TRUE(absl::StrContains(ReadFileOrDie(r + f), ".TH")) << f;
    }
  } else {
    ADD_FAILURE() << "scdoc is missing (tools/setup.sh installs it): no man pages built";
  }
  // The unit names the binary at the install-time prefix, and the hardening the issue asks for.
  const std::string unit = ReadFileOrDie(r + "/usr/lib/systemd/system/mxburst.service");
  for (const char* line : {"ExecStart=/usr/bin/mxburst --config /etc/mxburst/mxburst.toml",
                           "User=mxburst", "StateDirectory=mxburst", "LimitNOFILE=",
                           "NoNewPrivileges=yes", "ProtectSystem=strict",
                           "ExecReload=/bin/kill -HUP $MAINPID"}) {
    EXPECT_TRUE(absl::StrContains(unit, line)) << line;
  }
}

TEST_F(ServiceTest, SystemdAnalyzeVerifyAcceptsTheUnit) {
  ASSERT_EQ(install_rc_, 0) << *install_output_;
  ASSERT_TRUE(Executable("/usr/bin/systemd-analyze"))
      << "systemd-analyze missing (tools/setup.sh installs systemd)";
  std::string out;
  EXPECT_EQ(Verify("mxburst.service", &out), 0) << out;
  EXPECT_EQ(out, "") << "systemd-analyze verify warned";
}

// The check can fail: a misspelt directive and a binary that is not there are reported.
TEST_F(ServiceTest, SystemdAnalyzeVerifyReportsABrokenUnit) {
  ASSERT_EQ(install_rc_, 0) << *install_output_;
  std::string unit = ReadFileOrDie(*root_ + "/usr/lib/systemd/system/mxburst.service");
  unit = absl::StrReplaceAll(unit, {{"ProtectSystem=", "ProtectSytem="}});
  WriteFileOrDie(*root_ + "/usr/lib/systemd/system/mxburst-typo.service", unit);
  std::string out;
  Verify("mxburst-typo.service", &out);
  EXPECT_TRUE(absl::StrContains(out, "ProtectSytem")) << out;
  unit = absl::StrReplaceAll(unit, {{"/usr/bin/mxburst ", "/usr/bin/mxburst-missing "}});
  WriteFileOrDie(*root_ + "/usr/lib/systemd/system/mxburst-nobin.service", unit);
  EXPECT_NE(Verify("mxburst-nobin.service", &out), 0) << out;
}

// systemd-sysusers creates the unit's account from the installed sysusers.d entry.
TEST_F(ServiceTest, SysusersCreatesTheAccount) {
  ASSERT_EQ(install_rc_, 0) << *install_output_;
  ASSERT_TRUE(Executable("/usr/bin/systemd-sysusers")) << "systemd-sysusers missing (tools/setup.sh)";
  fs::create_directories(*root_ + "/etc");
  for (const char* f : {"/etc/passwd", "/etc/group"}) {
    if (!fs::exists(*root_ + f)) WriteFileOrDie(*root_ + f, "");
  }
  const std::string log = *dir_ + "/sysusers.log";
  ASSERT_EQ(RunCommand({"/usr/bin/systemd-sysusers", "--root=" + *root_}, log), 0) << Output(log);
  const std::string passwd = ReadFileOrDie(*root_ + "/etc/passwd");
  EXPECT_TRUE(absl::StrContains(passwd, "mxburst:x:")) << passwd;
  EXPECT_TRUE(absl::StrContains(passwd, ":/var/lib/mxburst:")) << passwd;
  EXPECT_TRUE(absl::StrContains(ReadFileOrDie(*root_ + "/etc/group"), "mxburst:x:"));
}

// The installed binary starts with the installed configuration (control endpoint off: other
// tests own the port; spool and log in the test's directory, as /var/lib is not ours here).
TEST_F(ServiceTest, InstalledEngineRunsWithTheInstalledConfig) {
  ASSERT_EQ(install_rc_, 0) << *install_output_;
  // Its files under /etc/mxburst are the ones in the root.
  const std::string config = *dir_ + "/mxburst.toml";
  WriteFileOrDie(config, absl::StrReplaceAll(ReadFileOrDie(*root_ + "/etc/mxburst/mxburst.toml"),
                                             {{"\"/etc/mxburst/", "\"" + *root_ + "/etc/mxburst/"}}));
  const std::string log = *dir_ + "/engine.log";
  int rc = RunCommand({*root_ + "/usr/bin/mxburst", "--config", config,
                       "--spool", *dir_ + "/spool", "--log", *dir_ + "/accounting.jsonl", "--http",
                       "", "--allow-root", "--drain", "--quiet"},
                      log, absl::Seconds(60));
  EXPECT_EQ(rc, 0) << Output(log);
}

// logrotate accepts the snippet (the account is the only thing this machine lacks).
TEST_F(ServiceTest, LogrotateAcceptsTheSnippet) {
  ASSERT_EQ(install_rc_, 0) << *install_output_;
  ASSERT_TRUE(Executable("/usr/sbin/logrotate")) << "logrotate missing (tools/setup.sh)";
  std::string conf = ReadFileOrDie(*root_ + "/etc/logrotate.d/mxburst");
  conf = absl::StrReplaceAll(conf, {{"mxburst mxburst", "root root"}});
  WriteFileOrDie(*dir_ + "/logrotate.conf", conf);
  const std::string log = *dir_ + "/logrotate.log";
  int rc = RunCommand({"/usr/sbin/logrotate", "--debug", "--state", *dir_ + "/logrotate.state",
                       *dir_ + "/logrotate.conf"},
                      log);
  const std::string out = Output(log);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_FALSE(absl::StrContains(out, "error:")) << out;
  EXPECT_TRUE(absl::StrContains(out, "/var/log/mxburst/*.jsonl")) << out;
}

}  // namespace
}  // namespace mxb::testing
