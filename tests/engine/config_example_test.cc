// dist/mxburst.toml (installed as /etc/mxburst/mxburst.toml) and dist/man/mxburst.toml.5.scd
// against the config parser, so neither can drift from it: the example parses as shipped, parses
// with every commented-out setting enabled, names every key the parser accepts, explains each,
// and the man page names every key too.
#include <sys/stat.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/config.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::string kExample = std::string(MXB_DIST_DIR) + "/mxburst.toml";
const std::string kManPage = std::string(MXB_DIST_DIR) + "/man/mxburst.toml.5.scd";

// "#key = ..." and "#[table]" (no space after '#') are settings shipped disabled.
bool IsDisabledSetting(const std::string& line) {
  return line.size() > 1 && line[0] == '#' && (line[1] == '[' || std::isalpha(line[1]));
}

// The relay's password file is read while the config loads: a real one (mode 0600) stands in.
std::string EnableAll(const std::string& text) {
  static const std::string password = [] {
    std::string path = ::testing::TempDir() + "/relay.password";
    std::ofstream(path) << "secret\n";
    chmod(path.c_str(), 0600);
    return path;
  }();
  std::vector<std::string> out;
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    std::string line(l);
    if (IsDisabledSetting(line)) line = line.substr(1);
    if (absl::StartsWith(line, "password_file = ")) line = "password_file = \"" + password + "\"";
    out.push_back(line);
  }
  return absl::StrJoin(out, "\n");
}

// "shaping[2].domain" -> "shaping[].domain", "domain.\"x\".tls" -> "domain.*.tls",
// "source_pools.bulk.addresses" -> "source_pools.*.addresses".
std::string Normalize(const std::string& key) {
  std::string k = std::regex_replace(key, std::regex(R"(\[[0-9]+\])"), "[]");
  k = std::regex_replace(k, std::regex(R"(^domain\."[^"]*"\.)"), "domain.*.");
  k = std::regex_replace(k, std::regex(R"(^source_pools\.[^.]+\.)"), "source_pools.*.");
  k = std::regex_replace(k, std::regex(R"(^relay\.[^.]+\.)"), "relay.*.");
  return k;
}

std::set<std::string> Normalized(const std::set<std::string>& keys) {
  std::set<std::string> out;
  for (const std::string& k : keys) out.insert(Normalize(k));
  return out;
}

TEST(ConfigExampleTest, ParsesAsShipped) {
  const std::string text = Slurp(kExample);
  ASSERT_FALSE(text.empty()) << kExample;
  EngineConfig c;
  absl::Status s = LoadConfigString(text, kExample, &c);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.spool_dir, "/var/lib/mxburst");
  EXPECT_EQ(c.http_listen, "127.0.0.1:8025");
}

TEST(ConfigExampleTest, NamesEveryKeyTheParserAccepts) {
  EngineConfig c;
  ConfigKeyListing listing;
  absl::Status s = LoadConfigString(EnableAll(Slurp(kExample)), kExample, &c, &listing);
  ASSERT_TRUE(s.ok()) << "with every #setting enabled: " << s;
  const std::set<std::string> accepted = Normalized(listing.accepted);
  const std::set<std::string> present = Normalized(listing.present);
  ASSERT_GT(accepted.size(), 60u);
  for (const std::string& key : accepted) {
    // The top-level `dns = [...]` is the short form of [dns] servers.
    if (key == "dns") continue;
    EXPECT_TRUE(present.count(key))
        << key << ": accepted by engine/config_file.cc but missing from dist/mxburst.toml "
        << "(add it, commented, with a line saying what it does)";
  }
}

TEST(ConfigExampleTest, EveryKeyIsExplained) {
  std::string previous;
  int keys = 0;
  for (absl::string_view l : absl::StrSplit(Slurp(kExample), '\n')) {
    std::string line(l);
    std::string setting = IsDisabledSetting(line) ? line.substr(1) : line;
    const bool is_key = !setting.empty() && std::isalpha(setting[0]) &&
                        setting.find('=') != std::string::npos;
    if (is_key) {
      ++keys;
      const bool trailing = setting.find(" # ") != std::string::npos;
      const bool above = absl::StartsWith(previous, "# ");
      EXPECT_TRUE(trailing || above) << "no explanation for: " << line;
    }
    previous = line;
  }
  EXPECT_GT(keys, 60);
}

TEST(ConfigExampleTest, ManPageNamesEveryKey) {
  const std::string page = Slurp(kManPage);
  ASSERT_FALSE(page.empty()) << kManPage;
  EngineConfig c;
  ConfigKeyListing listing;
  ASSERT_TRUE(LoadConfigString(EnableAll(Slurp(kExample)), kExample, &c, &listing).ok());
  for (const std::string& key : Normalized(listing.accepted)) {
    // The page lists keys under their table's heading ("# [limits]", "# [[shaping]]"): the last
    // dotted part is what it names; a sub-table by its whole name ("# [input.amqp]").
    std::string leaf = key.substr(key.rfind('.') + 1);
    EXPECT_TRUE(absl::StrContains(page, "*" + leaf + "*") || absl::StrContains(page, "[" + leaf) ||
                absl::StrContains(page, "# [" + key + "]"))
        << key << ": not described in dist/man/mxburst.toml.5.scd (as *" << leaf << "* or ["
        << leaf << "])";
  }
}

// The checker itself: a key the parser accepts but the text lacks is reported.
TEST(ConfigExampleTest, AMissingKeyIsFound) {
  EngineConfig c;
  ConfigKeyListing listing;
  ASSERT_TRUE(LoadConfigString("[limits]\nmax_connections = 3\n", "t.toml", &c, &listing).ok());
  EXPECT_TRUE(listing.accepted.count("limits.max_in_flight"));
  EXPECT_FALSE(listing.present.count("limits.max_in_flight"));
  EXPECT_TRUE(listing.present.count("limits.max_connections"));
}

}  // namespace
}  // namespace mxb
