// SpoolFileForAmqp (input/amqp_envelope.h): the body form passes through, the header form
// becomes envelope lines + body, and every refusal names the header.
#include "input/amqp_envelope.h"

#include <deque>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace mxb {
namespace {

// An AMQP field table built by hand (what rabbitmq-c decodes from the wire).
class Headers {
 public:
  Headers& Str(const std::string& key, const std::string& value) {
    return Add(key, Bytes(AMQP_FIELD_KIND_UTF8, value));
  }
  Headers& Array(const std::string& key, const std::vector<std::string>& values) {
    auto& items = arrays_.emplace_back();
    for (const std::string& v : values) items.push_back(Bytes(AMQP_FIELD_KIND_UTF8, v));
    amqp_field_value_t f{};
    f.kind = AMQP_FIELD_KIND_ARRAY;
    f.value.array.num_entries = static_cast<int>(items.size());
    f.value.array.entries = items.data();
    return Add(key, f);
  }
  Headers& Bool(const std::string& key, bool b) {
    amqp_field_value_t f{};
    f.kind = AMQP_FIELD_KIND_BOOLEAN;
    f.value.boolean = b;
    return Add(key, f);
  }
  Headers& Int(const std::string& key, int32_t n) {
    amqp_field_value_t f{};
    f.kind = AMQP_FIELD_KIND_I32;
    f.value.i32 = n;
    return Add(key, f);
  }
  const amqp_table_t* table() {
    table_.num_entries = static_cast<int>(entries_.size());
    table_.entries = entries_.data();
    return &table_;
  }

 private:
  amqp_field_value_t Bytes(uint8_t kind, const std::string& v) {
    const std::string& s = text_.emplace_back(v);
    amqp_field_value_t f{};
    f.kind = kind;
    f.value.bytes = {s.size(), const_cast<char*>(s.data())};
    return f;
  }
  Headers& Add(const std::string& key, amqp_field_value_t v) {
    const std::string& k = text_.emplace_back(key);
    entries_.push_back({{k.size(), const_cast<char*>(k.data())}, v});
    return *this;
  }
  std::deque<std::string> text_;
  std::deque<std::vector<amqp_field_value_t>> arrays_;
  std::vector<amqp_table_entry_t> entries_;
  amqp_table_t table_{};
};

constexpr const char* kMessage = "From: a@esp.example\nSubject: hi\n\nbody\n";

TEST(SpoolFileForAmqp, BodyFormPassesThrough) {
  const std::string pickup = std::string("x-sender: <b@esp.example>\nx-receiver: <r@d.example>\n") + kMessage;
  absl::StatusOr<std::string> f = SpoolFileForAmqp(nullptr, pickup);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*f, pickup);
  Headers other;  // headers without x-sender are not read
  other.Str("x-trace", "abc");
  f = SpoolFileForAmqp(other.table(), pickup);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*f, pickup);
}

TEST(SpoolFileForAmqp, HeaderFormBuildsTheEnvelope) {
  Headers h;
  h.Str("x-sender", "<bounce@esp.example>")
      .Array("x-receiver", {"<a@one.example>", "b@two.example"})
      .Str("x-job", "spring")
      .Bool("x-requiretls", true)
      .Int("x-priority", 3)
      .Str("x-attempts", "7")  // engine-written: never taken from a producer
      .Str("content-language", "en");
  absl::StatusOr<std::string> f = SpoolFileForAmqp(h.table(), kMessage);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*f, std::string("x-sender: <bounce@esp.example>\nx-receiver: <a@one.example>\n"
                            "x-receiver: b@two.example\nx-job: spring\nx-requiretls: yes\n"
                            "x-priority: 3\n") + kMessage);
  Headers one;  // one recipient as a plain string; the null sender
  one.Str("x-sender", "<>").Str("x-receiver", "<r@d.example>");
  f = SpoolFileForAmqp(one.table(), kMessage);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*f, std::string("x-sender: <>\nx-receiver: <r@d.example>\n") + kMessage);
}

TEST(SpoolFileForAmqp, RefusalsNameTheHeader) {
  struct Case {
    const char* what;
    Headers h;
    std::string body;
    const char* must_name;
  };
  std::vector<Case> cases;
  cases.reserve(16);  // Headers points into its own storage: no reallocation
  cases.push_back({"receiver without sender", {}, kMessage, "x-receiver"});
  cases.back().h.Str("x-receiver", "<r@d.example>");
  cases.push_back({"no receiver", {}, kMessage, "x-receiver"});
  cases.back().h.Str("x-sender", "<b@e.example>");
  cases.push_back({"LF in a receiver adds an envelope line", {}, kMessage, "x-receiver[1]"});
  cases.back().h.Str("x-sender", "<b@e.example>")
      .Array("x-receiver", {"<r@d.example>", "<s@d.example>\nx-receiver: <evil@x.example>"});
  cases.push_back({"CR in the job", {}, kMessage, "x-job"});
  cases.back().h.Str("x-sender", "<b@e.example>").Str("x-receiver", "r@d.example")
      .Str("x-job", "a\rb");
  cases.push_back({"sender not a string", {}, kMessage, "x-sender"});
  cases.back().h.Int("x-sender", 5).Str("x-receiver", "r@d.example");
  cases.push_back({"requiretls maybe", {}, kMessage, "x-requiretls"});
  cases.back().h.Str("x-sender", "<b@e.example>").Str("x-receiver", "r@d.example")
      .Str("x-requiretls", "maybe");
  cases.push_back({"receiver without @", {}, kMessage, "x-receiver"});
  cases.back().h.Str("x-sender", "<b@e.example>").Str("x-receiver", "nobody");
  cases.push_back({"body smuggles recipients", {},
                   std::string("x-receiver: <evil@x.example>\n") + kMessage, "envelope lines"});
  cases.back().h.Str("x-sender", "<b@e.example>").Str("x-receiver", "r@d.example");
  for (Case& c : cases) {
    absl::StatusOr<std::string> f = SpoolFileForAmqp(c.h.table(), c.body);
    ASSERT_FALSE(f.ok()) << c.what;
    EXPECT_TRUE(absl::StrContains(f.status().message(), c.must_name))
        << c.what << ": " << f.status().message();
    EXPECT_EQ(f.status().message().find('\n'), absl::string_view::npos) << c.what;
  }
}

}  // namespace
}  // namespace mxb
